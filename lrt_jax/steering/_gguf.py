"""Steering vectors as llama.cpp control vectors (GGUF), read and written with ``gguf``.

A control-vector file, as llama.cpp reads it (``--control-vector``,
``--control-vector-scaled``, ``--control-vector-layer-range``), is a GGUF file with

* ``general.architecture = "controlvector"``,
* ``controlvector.model_hint``: the model the vector was made for (a free string,
  llama.cpp does not check it),
* ``controlvector.layer_count``: the number of direction tensors,
* one float32 1-D tensor ``direction.{N}`` of width ``n_embd`` per steered layer.

Layer numbering, read from llama.cpp's source (not assumed):

* ``common/common.cpp``, ``common_control_vector_load_one``: parses ``N`` from the
  tensor name ``direction.N``, rejects ``N == 0`` ("invalid (zero) direction tensor
  layer index") and adds the tensor into a flat buffer at offset ``n_embd * (N - 1)``.
* ``src/llama-adapter.cpp``, ``llama_adapter_cvec::apply``: for ``il = 1 ..
  n_layer - 1`` copies offset ``n_embd * (il - 1)`` of that buffer into ``tensors[il]``
  ("buffer doesn't have data for layer 0"). The two ``- 1`` cancel: ``tensors[N]``
  holds ``direction.N``.
* ``llama_adapter_cvec::apply_to`` / ``tensor_for(il)`` add ``tensors[il]`` (when
  ``layer_start <= il <= layer_end``) where each model graph calls
  ``cur = build_cvec(cur, il)``: after block ``il``'s FFN residual add, just before the
  tensor named ``l_out`` (the block's output, the next block's input), with ``il`` the
  0-based block index.

So ``direction.N`` is added to the output of 0-based block ``N``, which is our
``layers.{N}.resid_post`` (``resid_pre + attn_out + mlp_out`` of ``layers.N``; see
:mod:`lrt_jax.model.decoder`): ``layers.{i}.resid_post`` <-> ``direction.{i}``, the
same index, no shift. ``layers.0.resid_post`` cannot be expressed (llama.cpp refuses
``direction.0``), and no other site kind (``resid_mid``, ``attn_out``, ...) has a
control-vector slot; both are errors here rather than silent re-indexing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from lrt_jax.steering._block_outputs import resid_post_site, vectors_by_block
from lrt_jax.steering._vector import SteeringVector

ARCHITECTURE = "controlvector"
_HINT_KEY = f"{ARCHITECTURE}.model_hint"
_COUNT_KEY = f"{ARCHITECTURE}.layer_count"
_TENSOR = re.compile(r"^direction\.(\d+)$")
_TOOL = "llama.cpp control-vector"
site_for_layer = resid_post_site  # ``direction.{layer}`` is added at ``layers.{layer}.resid_post``


def _directions(vectors_by_layer) -> dict[int, np.ndarray]:
    """``{layer: float32 [d_model]}``, checked: resid_post sites, layer >= 1, one width, finite, no duplicates."""
    directions = vectors_by_block(vectors_by_layer, tool=_TOOL)
    if 0 in directions:
        raise ValueError(
            f"{site_for_layer(0)}: llama.cpp cannot apply a control vector to block 0's output "
            "(direction.0 is rejected by common_control_vector_load_one); use layers 1 and above."
        )
    for layer, array in directions.items():
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{site_for_layer(layer)}: vector has non-finite values (nan or inf).")
    return directions


def _hint(vectors_by_layer, model_hint) -> str:
    if model_hint is not None:
        return str(model_hint)
    values = vectors_by_layer.values() if isinstance(vectors_by_layer, Mapping) else (
        [vectors_by_layer] if isinstance(vectors_by_layer, SteeringVector) else vectors_by_layer)
    models = {v.metadata.model for v in values if isinstance(v, SteeringVector)}
    if len(models) != 1:
        raise ValueError(f"pass model_hint: the vectors name {len(models)} models ({sorted(models)}).")
    return models.pop()


def save_gguf(path, vectors_by_layer, model_hint: str | None = None) -> None:
    """Write steering vectors as one llama.cpp control-vector GGUF file.

    Args:
      path: output file (conventionally ``*.gguf``).
      vectors_by_layer: ``{key: vector}`` where ``key`` is a layer index ``i`` or the site
        ``"layers.{i}.resid_post"`` and ``vector`` a :class:`SteeringVector` (whose site
        must be that one) or a ``[d_model]`` array; or an iterable of
        :class:`SteeringVector` keyed by their own sites. Vector ``i`` is written as
        ``direction.{i}``, which llama.cpp adds to the output of block ``i``, i.e. our
        ``layers.{i}.resid_post`` (see the module docstring for the source).
        Values are stored as float32.
      model_hint: ``controlvector.model_hint``; by default the vectors' common
        ``metadata.model``.

    Raises:
      ValueError: a site other than ``layers.{i}.resid_post``, layer 0, two vectors for
        one layer, widths that differ, non-finite values, or nothing to save.
    """
    import gguf

    directions = _directions(vectors_by_layer)
    hint = _hint(vectors_by_layer, model_hint)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writer = gguf.GGUFWriter(path, ARCHITECTURE)
    writer.add_string(_HINT_KEY, hint)
    writer.add_uint32(_COUNT_KEY, len(directions))
    for layer, direction in directions.items():
        writer.add_tensor(f"direction.{layer}", direction)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def load_gguf(path) -> tuple[dict[str, np.ndarray], str]:
    """Read a llama.cpp control-vector GGUF file.

    Returns:
      ``({site: float32 [d_model]}, model_hint)``: ``direction.{i}`` becomes site
      ``"layers.{i}.resid_post"`` (the inverse of :func:`save_gguf`), sorted by layer;
      ``model_hint`` is ``""`` when the file has none.

    Raises:
      ValueError: the file is not a control vector (architecture), or a tensor is not a
        float32 1-D ``direction.{N}`` with ``N >= 1`` of the common width.
    """
    import gguf

    reader = gguf.GGUFReader(os.fspath(path))
    fields = reader.fields
    architecture = fields["general.architecture"].contents() if "general.architecture" in fields else None
    if architecture != ARCHITECTURE:
        raise ValueError(
            f"{path}: general.architecture is {architecture!r}, not {ARCHITECTURE!r}; not a control vector.")
    hint = fields[_HINT_KEY].contents() if _HINT_KEY in fields else ""
    by_layer: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        match = _TENSOR.match(tensor.name)
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"{path}: tensor {tensor.name!r} is not 'direction.N' with N >= 1.")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise ValueError(f"{path}: tensor {tensor.name!r} must be float32 and 1-D (llama.cpp requires both).")
        by_layer[int(match.group(1))] = np.array(tensor.data, dtype=np.float32).reshape(-1)
    if not by_layer:
        raise ValueError(f"{path}: no direction tensors.")
    if len({d.shape[0] for d in by_layer.values()}) > 1:
        raise ValueError(f"{path}: direction tensors have different widths.")
    return {site_for_layer(layer): by_layer[layer] for layer in sorted(by_layer)}, hint


__all__ = ["load_gguf", "save_gguf", "site_for_layer"]
