"""Apply a family's name table: HF checkpoint tensors ⇄ flat parameter tree.

The flat tree is ``{"layers_0/attn/q_proj/kernel": array, ...}`` (Flax names joined by
``/``). Loading checks the checkpoint against the *expected* tree — the shapes of
``Decoder(config).init`` obtained with ``jax.eval_shape``, so the decoder is the single
source of truth for which parameters exist — and reports, naming file and tensor,
every tensor that is unexpected, missing or of the wrong shape. These checks read only
the files' headers; the data is read afterwards, slice by slice, by
:mod:`lrt_jax.loading.sliced_arrays`.
"""

from __future__ import annotations

import re
from collections import defaultdict

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.config import ModelConfig
from lrt_jax.loading.errors import CheckpointError
from lrt_jax.loading.family_spec import Family
from lrt_jax.loading.safetensors_io import CheckpointReader, StoredTensor
from lrt_jax.loading.sliced_arrays import ParamSource, place_param
from lrt_jax.loading.tensor_rules import Fixup, hf_name_for_tree_path, match_tensor_name


def expected_param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``{tree path: shape}`` of the decoder's parameters, computed without allocating them."""
    from lrt_jax.model import Decoder  # the decoder imports nothing from loading; keep it that way.

    def init():
        return Decoder(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]

    shapes = jax.eval_shape(init)
    return {path: leaf.shape for path, leaf in flax.traverse_util.flatten_dict(shapes, sep="/").items()}


def tree_shapes_of(fixup: Fixup, tensor: StoredTensor, config: ModelConfig) -> tuple[tuple[int, ...], ...]:
    """The shapes of ``fixup.to_tree(tensor)``, from the header alone.

    ``to_tree`` runs on a zero-stride stand-in of the tensor's shape (one element of
    memory): the fix-ups only split, swap and reshape, which are views of it.
    """
    stand_in = np.broadcast_to(np.zeros((), tensor.dtype), tensor.shape)
    return tuple(part.shape for part in fixup.to_tree(stand_in, config))


def param_sources(reader: CheckpointReader, family: Family, config: ModelConfig,
                  expected: dict[str, tuple[int, ...]]) -> dict[str, ParamSource]:
    """Resolve every checkpoint tensor through ``family``'s table, reading headers only.

    ``expected``: :func:`expected_param_shapes` of ``config``.

    Returns:
      ``{tree path: ParamSource}``, one per parameter of ``config``'s decoder.

    Raises:
      CheckpointError: a tensor no rule (or no parameter of ``config``) accounts for, a
        tensor of the wrong shape, two tensors for the same parameter, or a parameter that
        no tensor provides.
    """
    checkpoint_files = ", ".join(sorted({str(p) for p in reader.files.values()}))
    ignored = [re.compile(p) for p in family.ignored_tensors]
    sources: dict[str, ParamSource] = {}
    experts: dict[str, dict[int, StoredTensor]] = defaultdict(dict)
    expert_rules: dict[str, tuple[Fixup, int]] = {}
    source: dict[tuple, str] = {}

    for name, path in sorted(reader.files.items()):
        canonical = name
        if family.optional_name_prefix and match_tensor_name(family.tensor_rules, name) is None:
            canonical = family.optional_name_prefix + name
        if any(p.fullmatch(canonical) for p in ignored):
            continue
        match = match_tensor_name(family.tensor_rules, canonical)
        if match is not None and config.tie_embeddings and match.tree_paths == ("lm_head/kernel",):
            continue  # Some tied checkpoints also store the (identical) output head.
        if match is None or any(p not in expected for p in match.tree_paths):
            raise CheckpointError(
                f"{path}: unexpected tensor {name!r}: a {family.model_type} model with this config.json has no "
                "such parameter. Check that config.json belongs to these weights."
            )
        tensor = reader.tensor(name)
        fixup = match.rule.fixup
        try:
            shapes = tree_shapes_of(fixup, tensor, config)
        except ValueError as error:
            raise CheckpointError(f"{path}: tensor {name!r} has shape {tensor.shape}, which config.json does not fit ({error}).") from error
        for part, (tree_path, shape) in enumerate(zip(match.tree_paths, shapes)):
            want = expected[tree_path][1:] if match.rule.per_expert else expected[tree_path]
            if shape != want:
                raise CheckpointError(
                    f"{path}: tensor {name!r} has shape {tensor.shape}; as {tree_path} that is {shape}, but "
                    f"config.json implies {want}. Check that config.json belongs to these weights."
                )
            key = (tree_path, match.expert)
            if key in source:
                raise CheckpointError(f"{path}: tensors {source[key]!r} and {name!r} both provide {tree_path}.")
            source[key] = name
            if match.rule.per_expert:
                experts[tree_path][match.expert] = tensor
                expert_rules[tree_path] = (fixup, part)
            else:
                sources[tree_path] = ParamSource((tensor,), fixup, part, False, config)

    for tree_path, by_index in experts.items():
        count = expected[tree_path][0]
        if sorted(by_index) != list(range(count)):
            missing = sorted(set(range(count)) - set(by_index))
            extra = sorted(set(by_index) - set(range(count)))
            raise CheckpointError(
                f"{checkpoint_files}: {hf_name_for_tree_path(family.tensor_rules, tree_path)} needs experts "
                f"0..{count - 1}; missing {missing}, unexpected {extra}. Check num_experts in config.json."
            )
        fixup, part = expert_rules[tree_path]
        sources[tree_path] = ParamSource(tuple(by_index[j] for j in range(count)), fixup, part, True, config)

    missing = sorted(set(expected) - set(sources))
    if missing:
        names = [hf_name_for_tree_path(family.tensor_rules, p) for p in missing]
        raise CheckpointError(
            f"{checkpoint_files}: missing tensors {names} (for parameters {missing}). "
            "The checkpoint is incomplete or config.json belongs to another model."
        )
    return sources


def read_flat_tree(
    reader: CheckpointReader, family: Family, config: ModelConfig, dtype, shardings: dict | None = None
) -> dict[str, jax.Array]:
    """Read the checkpoint through ``family``'s table into a flat tree of ``dtype`` arrays.

    With ``shardings`` (``{tree path: Sharding}``) every parameter is built slice by
    slice in its sharding (:func:`lrt_jax.loading.sliced_arrays.place_param`): each
    process reads only its addressable devices' slices, and holds about one slice on
    the host at a time. Without, each parameter is read whole onto the default device,
    one at a time.

    Raises:
      CheckpointError: as :func:`param_sources`, and for unreadable or non-finite data.
    """
    expected = expected_param_shapes(config)
    sources = param_sources(reader, family, config, expected)
    shardings = shardings or {}
    return {path: place_param(sources[path], expected[path], dtype, shardings.get(path)) for path in sorted(sources)}


def hf_tensors_from_flat_tree(flat: dict[str, np.ndarray], family: Family, config: ModelConfig) -> dict[str, np.ndarray]:
    """The inverse of :func:`read_flat_tree`: HF tensor name → array, in the family's written layout."""
    remaining = set(flat)
    tensors: dict[str, np.ndarray] = {}
    for rule in family.tensor_rules:
        if rule.load_only:
            continue
        for layer in range(config.n_layers) if "{layer}" in rule.hf_name else (None,):
            paths = rule.tree_paths_for(layer)
            if not all(p in flat for p in paths):
                continue
            arrays = tuple(flat[p] for p in paths)
            if rule.per_expert:
                for j in range(arrays[0].shape[0]):
                    tensors[rule.hf_name.format(layer=layer, expert=j)] = rule.fixup.to_hf(tuple(a[j] for a in arrays), config)
            else:
                tensors[rule.hf_name.format(layer=layer)] = rule.fixup.to_hf(arrays, config)
            remaining -= set(paths)
    if remaining:
        raise ValueError(f"the {family.model_type} name table has no row that writes {sorted(remaining)}.")
    return tensors
