"""Logical axis names for parameters and activations, and the rules that map them onto a mesh.

Every parameter of the decoder gets a tuple of *logical* axis names from its path in
the parameter tree (one table below, the single source of truth); a *rule set* maps
logical names to mesh axes. Users override placement by passing other rules, e.g.
``(("embed", None), ("heads", "tensor"), ...)`` to turn FSDP off, without touching
the model. Logical names:

============ =====================================================
``vocab``    vocabulary axis of the embedding and the LM head
``embed``    model width ``d_model``
``heads``    query heads × head_dim (q/o projections)
``kv_heads`` key/value heads × head_dim (k/v projections)
``mlp``      MLP hidden width (dense and per expert)
``experts``  expert index of MoE weights
``expert_embed``, ``expert_mlp``  ``d_model`` and hidden width of the expert weights: the sparse
             dispatch splits experts along their width over ``fsdp × tensor`` and keeps
             ``d_model`` whole, so no expert weight is gathered (:mod:`lrt_jax.model.mlp`)
``batch``    batch axis of activations and token batches
``act_*``    activation dimensions (``act_batch``, ``act_seq``, ``act_embed``, ``act_heads``,
             ``act_kv_heads``, ``act_mlp``, ``act_vocab``, ``act_experts``), constrained by
             :func:`lrt_jax.model.sharding.constrain` when the config carries a mesh
============ =====================================================

Stacked layers (:func:`lrt_jax.model.stack_layers`, ``layers/offset_{j}/...``) carry one
more leading axis, the layer, which is never sharded.

A mesh axis that does not divide the parameter dimension it would shard (GPT-2's
vocabulary of 50257 over ``tensor=2``, 3 heads over ``tensor=8``) is dropped for that
dimension: the parameter is replicated along that axis instead, with one warning that
lists every such case. The numbers do not change, only that parameter's memory.
Batches are still refused when the mesh does not divide them (a batch is the user's
choice; pad it or choose the mesh).
"""

from __future__ import annotations

import re
import warnings

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrt_jax.parallel.mesh import MeshError

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("experts", None),
    ("expert_embed", None),
    ("expert_mlp", ("fsdp", "tensor")),
    # Activations (lrt_jax.model.sharding.constrain): the residual stream's d_model is never split.
    ("act_batch", ("data", "fsdp")),
    ("act_seq", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("act_experts", None),
)

# (regex on the "/"-joined parameter path, logical axes). First match wins.
PARAM_LOGICAL_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"^embed/embedding$", ("vocab", "embed")),
    (r"^pos_embed/embedding$", (None, "embed")),
    (r"^lm_head/kernel$", ("embed", "vocab")),
    (r"/attn/q_proj/kernel$", ("embed", "heads")),
    (r"/attn/q_proj/bias$", ("heads",)),
    (r"/attn/[kv]_proj/kernel$", ("embed", "kv_heads")),
    (r"/attn/[kv]_proj/bias$", ("kv_heads",)),
    (r"/attn/o_proj/kernel$", ("heads", "embed")),
    (r"/(mlp|shared)/(gate|up)_proj/kernel$", ("embed", "mlp")),
    (r"/(mlp|shared)/(gate|up)_proj/bias$", ("mlp",)),
    (r"/(mlp|shared)/down_proj/kernel$", ("mlp", "embed")),
    (r"/moe/(gate|up)_proj$", ("experts", "expert_embed", "expert_mlp")),
    (r"/moe/down_proj$", ("experts", "expert_mlp", "expert_embed")),
    (r"/moe/(router|shared_gate)/kernel$", ("embed", None)),
)


def param_path(path) -> str:
    return "/".join(str(getattr(key, "key", key)) for key in path)


def logical_axes_of_params(params) -> object:
    """A pytree like ``params`` whose leaves are ``PartitionSpec`` of logical names (replicated if unlisted)."""

    def axes(path, leaf):
        name = param_path(path)
        for pattern, logical in PARAM_LOGICAL_AXES:
            if re.search(pattern, name):
                stacked = name.startswith("layers/") and leaf.ndim == len(logical) + 1  # model.stack_layers
                return PartitionSpec(*((None,) if stacked else ()), *logical)
        return PartitionSpec(*([None] * leaf.ndim))

    return jax.tree_util.tree_map_with_path(axes, params)


def check_divisible(shape, spec: PartitionSpec, mesh: Mesh, what: str) -> None:
    """Raise :class:`MeshError` when a mesh axis does not divide the dimension it shards."""
    for dim, (size, axes) in enumerate(zip(shape, spec)):
        if axes is None:
            continue
        names = (axes,) if isinstance(axes, str) else tuple(axes)
        parts = 1
        for name in names:
            parts *= mesh.shape[name]
        if size % parts:
            raise MeshError(
                f"{what}: dimension {dim} has size {size}, which mesh axis {'×'.join(names)} "
                f"(size {parts}) does not divide. Choose a mesh whose {'×'.join(names)} size divides {size}, "
                f"or map that logical axis to None in the rules."
            )


def fit_spec_to_mesh(shape, spec: PartitionSpec, mesh: Mesh) -> tuple[PartitionSpec, list[str]]:
    """``spec`` without the mesh axes that do not divide their dimension, and a note for each one dropped."""
    entries, notes = [], []
    for dim, (size, axes) in enumerate(zip(shape, spec)):
        names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        kept, parts = [], 1
        for name in names:
            if size % (parts * mesh.shape[name]) == 0:
                kept.append(name)
                parts *= mesh.shape[name]
            else:
                notes.append(f"dimension {dim} ({size}) replicated over {name!r} (size {mesh.shape[name]})")
        entries.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*entries), notes


def param_shardings(params, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """``NamedSharding`` per parameter (params may be abstract shapes).

    A dimension that a mesh axis does not divide is replicated along that axis, with
    one ``UserWarning`` listing every such parameter (see the module docstring).
    """
    logical = logical_axes_of_params(params)
    mesh_specs = jax.tree.map(lambda spec: nn.logical_to_mesh_axes(tuple(spec), rules), logical,
                              is_leaf=lambda x: isinstance(x, PartitionSpec))
    replicated = []

    def sharding(path, leaf, spec):
        spec, notes = fit_spec_to_mesh(leaf.shape, spec, mesh)
        replicated.extend(f"{param_path(path)} {tuple(leaf.shape)}: {note}" for note in notes)
        return NamedSharding(mesh, spec)

    shardings = jax.tree_util.tree_map_with_path(sharding, params, mesh_specs,
                                                 is_leaf=lambda x: isinstance(x, PartitionSpec))
    if replicated:
        warnings.warn(f"the mesh does not divide {len(replicated)} parameter dimension(s), which are replicated "
                      f"along those axes instead (same numbers, more memory): {'; '.join(replicated)}.",
                      stacklevel=2)
    return shardings


def batch_spec(rules: Rules = DEFAULT_RULES, ndim: int = 2) -> PartitionSpec:
    """Mesh ``PartitionSpec`` of a ``[batch, ...]`` array: the batch axis by the ``batch`` rule."""
    return nn.logical_to_mesh_axes(("batch",) + (None,) * (ndim - 1), rules)
