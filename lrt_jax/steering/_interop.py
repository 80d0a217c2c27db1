"""Steering vectors to and from repeng's ``ControlVector`` and steering-vectors' ``SteeringVector``.

Both libraries key a vector by a 0-based decoder-block index ``i`` and add it to
the output of block ``i``, which is our ``layers.{i}.resid_post`` (HF
``hidden_states[i + 1]``): the same index, no shift. Read from their sources
(repeng 0.4.0, steering-vectors 0.12.2), not assumed:

repeng
  * ``control.py``, ``ControlModel.__init__``: wraps ``model.model.layers[layer_id]``
    (``model.transformer.h`` for GPT-2-like models) in a ``ControlModule``; negative
    ``layer_ids`` count from the end (``len(layers) + i``).
  * ``ControlModel.set_control(vector, coeff)``: for each (normalised, non-negative)
    layer id, the control is ``coeff * vector.directions[layer_id]``, so
    ``directions`` must hold non-negative keys.
  * ``ControlModule.forward``: runs the block and returns ``output + control`` (on
    the hidden-state element when the block returns a tuple), masked to zero only on
    left padding (positions before ``position_ids == 0``). That is ``Add(site, v,
    alpha=coeff)`` at ``layers.{layer_id}.resid_post``.
  * ``extract.py``, ``read_representations`` / ``batched_get_hiddens``: directions
    for ``layer`` are estimated from ``hidden_states[layer + 1]`` at the last
    non-padding token, the output of block ``layer`` — consistent with where they
    are added. The sign is chosen so positive examples project higher; a negative
    ``coeff`` reverses the behaviour.

steering-vectors
  * ``SteeringVector.layer_activations: dict[int, Tensor]`` with
    ``layer_type = "decoder_block"``; ``patch_activations`` / ``apply(model,
    multiplier=m)`` look up ``collect_matching_layers(model, matcher)[layer]`` (the
    modules ``model.layers.{i}`` in order, so a negative key counts from the end like
    a Python list) and register a forward hook adding ``m * activation`` to the
    module's output (from ``min_token_index`` on, default 0: every token).
  * ``train_steering_vector`` records that same module's output (read at token
    ``read_token_index``, default -1) and, with the default ``mean_aggregator``,
    returns ``mean(pos - neg)``, our :func:`~lrt_jax.steering.diff_of_means`.

Only ``layers.{i}.resid_post`` sites convert; other site kinds and other
steering-vectors ``layer_type``s are refused rather than re-indexed. The libraries
and torch are imported inside the functions; lrt_jax does not depend on them.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from lrt_jax.steering._block_outputs import resid_post_site, vectors_by_block
from lrt_jax.steering._vector import SteeringVector, VectorInfo

_TOOL = "repeng/steering-vectors"
_site = resid_post_site


def _by_layer(vectors) -> dict[int, np.ndarray]:
    """``{layer: float32 [d_model]}`` from a vector, an iterable of vectors or a ``{site|layer: vector|array}`` map."""
    return vectors_by_block(vectors, tool=_TOOL)


def _ours(arrays: Mapping[int, np.ndarray], *, model: str, n_layers: int | None, position_rule: str,
          estimator: str, source: str) -> dict[str, SteeringVector]:
    resolved: dict[int, np.ndarray] = {}
    for key, array in arrays.items():
        layer = int(key)
        if layer < 0:
            if n_layers is None:
                raise ValueError(f"{source} has layer {layer} (counted from the end); pass n_layers to resolve it.")
            layer += n_layers
            if layer < 0:
                raise ValueError(f"{source} layer {int(key)} is out of range for n_layers={n_layers}.")
        if layer in resolved:
            raise ValueError(f"{source} has two vectors for block {layer}.")
        array = np.asarray(array, dtype=np.float32).reshape(-1)
        resolved[layer] = array
    if not resolved:
        raise ValueError(f"{source} holds no layers.")
    widths = {a.shape[0] for a in resolved.values()}
    if len(widths) > 1:
        raise ValueError(f"{source} has vectors of different widths {sorted(widths)}.")
    (d_model,) = widths
    return {
        _site(layer): SteeringVector(
            jnp.asarray(array),
            VectorInfo(model=model, site=_site(layer), d_model=d_model, position_rule=position_rule,
                       estimator=estimator),
        )
        for layer, array in sorted(resolved.items())
    }


def _import_repeng():
    try:
        import repeng
    except ImportError as error:
        raise ImportError("to_repeng needs repeng: pip install repeng") from error
    except AttributeError as error:  # repeng 0.4 annotates with np.float_, removed in NumPy 2
        raise ImportError(
            f"repeng failed to import ({error}); repeng 0.4 uses np.float_, which NumPy 2 removed. "
            "Use NumPy < 2 or a repeng release that supports NumPy 2 (pip install -U repeng)."
        ) from error
    return repeng


def _import_torch(purpose: str, package: str):
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"{purpose} needs torch and {package}: pip install {package}") from error
    return torch


def to_repeng(vectors, model_type: str = "llama"):
    """Our vector(s) as one ``repeng.ControlVector``.

    Args:
      vectors: a :class:`SteeringVector`, an iterable of them, or ``{key: vector}``
        with ``key`` a layer index or ``"layers.{i}.resid_post"`` and ``vector`` a
        :class:`SteeringVector` or ``[d_model]`` array.
      model_type: repeng's ``ControlVector.model_type`` (``config.model_type`` of the
        model, e.g. ``"llama"``).

    Returns:
      ``ControlVector(model_type, directions={i: float32 [d_model]})``:
      ``layers.{i}.resid_post`` becomes ``directions[i]``, which
      ``ControlModel(model, layer_ids=[i]).set_control(cv, coeff)`` adds (times
      ``coeff``) to block ``i``'s output, i.e. ``Add("layers.{i}.resid_post", v,
      alpha=coeff)``.

    Raises:
      ImportError: repeng is missing (``pip install repeng``) or fails to import.
      ValueError: a site other than ``layers.{i}.resid_post``, mixed widths, duplicates.
    """
    directions = _by_layer(vectors)
    repeng = _import_repeng()
    return repeng.ControlVector(model_type=model_type, directions=directions)


def from_repeng(control_vector, model: str, *, n_layers: int | None = None, position_rule: str = "last_token",
                estimator: str = "repeng.ControlVector") -> dict[str, SteeringVector]:
    """A ``repeng.ControlVector`` as ``{site: SteeringVector}`` (inverse of :func:`to_repeng`).

    Only ``control_vector.directions`` is read, so repeng need not be importable.
    ``directions[i]`` becomes ``layers.{i}.resid_post``; ``d_model`` is the
    directions' width. Negative keys count from the end and need ``n_layers``.

    Args:
      control_vector: anything with ``.directions: dict[int, array]``.
      model: ``VectorInfo.model`` of the results.
      n_layers: decoder blocks in the model, to resolve negative layer keys.
      position_rule, estimator: recorded in each ``VectorInfo`` (repeng reads the last
        non-padding token; its method is not stored in the vector).
    """
    return _ours(dict(control_vector.directions), model=model, n_layers=n_layers, position_rule=position_rule,
                 estimator=estimator, source="ControlVector")


def to_steering_vectors(vectors, *, dtype=None):
    """Our vector(s) as one ``steering_vectors.SteeringVector`` (``layer_type="decoder_block"``).

    ``layers.{i}.resid_post`` becomes ``layer_activations[i]`` (a torch tensor,
    float32 unless ``dtype`` is given), which ``sv.apply(model, multiplier=m)`` adds
    (times ``m``) to block ``i``'s output: ``Add("layers.{i}.resid_post", v,
    alpha=m)``. ``vectors`` is as in :func:`to_repeng`.

    Raises:
      ImportError: torch or steering-vectors is missing (``pip install steering-vectors``).
    """
    arrays = _by_layer(vectors)
    torch = _import_torch("to_steering_vectors", "steering-vectors")
    try:
        import steering_vectors
    except ImportError as error:
        raise ImportError("to_steering_vectors needs steering-vectors: pip install steering-vectors") from error
    activations = {layer: torch.from_numpy(array.copy()) for layer, array in arrays.items()}
    if dtype is not None:
        activations = {layer: t.to(dtype) for layer, t in activations.items()}
    return steering_vectors.SteeringVector(layer_activations=activations, layer_type="decoder_block")


def from_steering_vectors(steering_vector, model: str, *, n_layers: int | None = None,
                          position_rule: str = "last_token",
                          estimator: str = "steering_vectors.SteeringVector") -> dict[str, SteeringVector]:
    """A ``steering_vectors.SteeringVector`` as ``{site: SteeringVector}`` (inverse of :func:`to_steering_vectors`).

    ``layer_activations[i]`` becomes ``layers.{i}.resid_post`` (float32). Negative keys
    count from the end, as steering-vectors indexes its layer list, and need
    ``n_layers``. Only ``layer_type == "decoder_block"`` converts.
    ``position_rule`` defaults to ``train_steering_vector``'s ``read_token_index=-1``.
    """
    layer_type = getattr(steering_vector, "layer_type", "decoder_block")
    if layer_type != "decoder_block":
        raise ValueError(
            f"layer_type {layer_type!r} has no lrt_jax site here; only 'decoder_block' (block outputs, "
            "layers.{i}.resid_post) converts."
        )
    arrays = {
        int(layer): np.asarray(t.detach().to("cpu").float().numpy() if hasattr(t, "detach") else t)
        for layer, t in steering_vector.layer_activations.items()
    }
    return _ours(arrays, model=model, n_layers=n_layers, position_rule=position_rule, estimator=estimator,
                 source="steering-vectors SteeringVector")
