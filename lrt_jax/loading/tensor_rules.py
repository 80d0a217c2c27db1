"""Declarative tensor-name mapping between HF checkpoints and our parameter tree.

A family is described by a table of :class:`TensorRule` rows. Each row pairs an HF
tensor-name *template* with one or more parameter-tree path templates and a
:class:`Fixup` that converts the array between the two layouts, in both directions:

* ``{layer}`` in a template stands for a decoder-layer index; it matches ``\\d+`` in a
  checkpoint name and is formatted back when saving.
* ``{expert}`` (HF side only) marks one tensor per expert: the loader stacks those
  arrays along a new leading ``[n_experts, ...]`` axis of the tree path, the saver
  unstacks it.
* A row that produces several tree paths (``len(tree_paths) > 1``) is a fused HF tensor
  (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``, v5 ``experts.gate_up_proj``) whose
  fix-up splits it.

Tree paths are ``/``-joined Flax names (``"layers_0/attn/q_proj/kernel"``); kernels are
``[in, out]`` while torch ``Linear`` weights are ``[out, in]``, hence :data:`TRANSPOSE`.
Rows with ``load_only=True`` describe an alternative layout that we read but never write
(the saver writes the layout of the first row for each tree path).

Slice-wise loading (:mod:`lrt_jax.loading.sliced_arrays`) asks a fix-up for one slice
of one of its outputs: ``Fixup.read_slice(source, index, part, config)`` maps ``index``
(a slice of tree output ``part``) back to the slice of the HF tensor it comes from and
reads only that (a transpose swaps the index's last two slices; a fused q|k|v or gate|up
tensor shifts the slice into that part's block). A fix-up without ``read_slice`` (GPT-NeoX's
per-head interleaved ``query_key_value``, whose slices are not one rectangle of the
source) is read whole, once per parameter, and sliced in memory.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

from lrt_jax.config import ModelConfig
from lrt_jax.loading.byte_ranges import shifted

# to_tree(hf_array, config) -> tuple of tree arrays; to_hf(tree_arrays, config) -> hf_array.
ToTree = Callable[[np.ndarray, ModelConfig], tuple[np.ndarray, ...]]
ToHf = Callable[[tuple[np.ndarray, ...], ModelConfig], np.ndarray]
# read_slice(source, index, part, config) -> to_tree(source)[part][index], reading only what it needs;
# source has .shape and .read(index) (a StoredTensor), index is one concrete step-1 slice per dimension.
ReadSlice = Callable[[object, tuple[slice, ...], int, ModelConfig], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Fixup:
    """A pair of inverse array conversions between the HF and tree layouts, and optionally a sliced read."""

    to_tree: ToTree
    to_hf: ToHf
    read_slice: ReadSlice | None = None


def _swap_last_two(index: tuple[slice, ...]) -> tuple[slice, ...]:
    return (*index[:-2], index[-1], index[-2])


IDENTITY = Fixup(lambda a, c: (a,), lambda t, c: t[0], lambda source, index, part, c: source.read(index))

# Swapping the last two axes turns a torch Linear weight [out, in] into a kernel [in, out],
# and a fused expert stack [E, out, in] into [E, in, out].
TRANSPOSE = Fixup(
    lambda a, c: (np.swapaxes(a, -1, -2),),
    lambda t, c: np.swapaxes(t[0], -1, -2),
    lambda source, index, part, c: np.swapaxes(source.read(_swap_last_two(index)), -1, -2),
)


def _split_last_axis_in_three(a, config):
    return tuple(np.split(a, 3, axis=-1))


def _read_contiguous_qkv_slice(source, index, part, config):
    width = source.shape[-1] // 3
    return source.read((*index[:-1], shifted(index[-1], part * width)))


# GPT-2 Conv1D c_attn is already [in, out]; its outputs are q | k | v back to back.
SPLIT_CONTIGUOUS_QKV = Fixup(_split_last_axis_in_three, lambda t, c: np.concatenate(t, axis=-1),
                             _read_contiguous_qkv_slice)


def _split_per_head_qkv(a, config):
    # GPT-NeoX interleaves per head: output rows are [n_heads, (q|k|v), head_dim].
    per_head = a.reshape(config.n_heads, 3, config.head_dim, *a.shape[1:])
    parts = [per_head[:, j].reshape(config.n_heads * config.head_dim, *a.shape[1:]) for j in range(3)]
    return tuple(np.swapaxes(p, -1, -2) if p.ndim == 2 else p for p in parts)


def _join_per_head_qkv(parts, config):
    rows = [np.swapaxes(p, -1, -2) if p.ndim == 2 else p for p in parts]
    per_head = [r.reshape(config.n_heads, config.head_dim, *r.shape[1:]) for r in rows]
    return np.stack(per_head, axis=1).reshape(3 * config.n_heads * config.head_dim, *rows[0].shape[1:])


SPLIT_PER_HEAD_QKV = Fixup(_split_per_head_qkv, _join_per_head_qkv)


def _split_gate_up(a, config):
    gate, up = np.split(a, 2, axis=1)  # [E, 2 * moe_d_ff, d_model], gate rows first.
    return np.swapaxes(gate, -1, -2), np.swapaxes(up, -1, -2)


def _read_gate_up_slice(source, index, part, config):
    experts, model, hidden = index  # of the [E, d_model, moe_d_ff] output; the source is [E, 2 * moe_d_ff, d_model]
    rows = shifted(hidden, part * (source.shape[1] // 2))
    return np.swapaxes(source.read((experts, rows, model)), -1, -2)


SPLIT_FUSED_GATE_UP = Fixup(
    _split_gate_up, lambda t, c: np.concatenate([np.swapaxes(x, -1, -2) for x in t], axis=1), _read_gate_up_slice
)


@dataclasses.dataclass(frozen=True)
class TensorRule:
    """One row of a family's name table (see the module docstring)."""

    hf_name: str
    tree_paths: tuple[str, ...]
    fixup: Fixup = IDENTITY
    load_only: bool = False

    @property
    def per_expert(self) -> bool:
        return "{expert}" in self.hf_name

    @property
    def pattern(self) -> re.Pattern:
        escaped = re.escape(self.hf_name)
        for field in ("layer", "expert"):
            escaped = escaped.replace(re.escape("{" + field + "}"), rf"(?P<{field}>\d+)")
        return re.compile(escaped)

    def tree_paths_for(self, layer: int | None) -> tuple[str, ...]:
        return tuple(p.format(layer=layer) for p in self.tree_paths)


def rule(hf_name: str, tree_paths: str | tuple[str, ...], fixup: Fixup = IDENTITY, load_only=False) -> TensorRule:
    """Shorthand for a table row; a single tree path may be given as a string."""
    paths = (tree_paths,) if isinstance(tree_paths, str) else tuple(tree_paths)
    return TensorRule(hf_name, paths, fixup, load_only)


@dataclasses.dataclass(frozen=True)
class TensorMatch:
    """A checkpoint tensor name resolved against a table."""

    rule: TensorRule
    tree_paths: tuple[str, ...]
    expert: int | None


def match_tensor_name(rules: tuple[TensorRule, ...], name: str) -> TensorMatch | None:
    """The first row whose template matches ``name`` exactly, or ``None``."""
    for candidate in rules:
        found = candidate.pattern.fullmatch(name)
        if found:
            fields = found.groupdict()
            layer = int(fields["layer"]) if "layer" in fields else None
            expert = int(fields["expert"]) if "expert" in fields else None
            return TensorMatch(candidate, candidate.tree_paths_for(layer), expert)
    return None


def hf_name_for_tree_path(rules: tuple[TensorRule, ...], tree_path: str) -> str:
    """The HF tensor name we would write for ``tree_path`` (experts shown as ``*``), for error messages."""
    for candidate in rules:
        if candidate.load_only:
            continue
        for template in candidate.tree_paths:
            pattern = re.escape(template).replace(re.escape("{layer}"), r"(?P<layer>\d+)")
            found = re.fullmatch(pattern, tree_path)
            if found:
                return candidate.hf_name.format(layer=found.groupdict().get("layer"), expert="*")
    return tree_path
