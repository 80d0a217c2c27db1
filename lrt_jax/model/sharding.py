"""Sharding constraints on activations, by logical axis names.

The decoder calls :func:`constrain` on its activations at every site and inside
attention and the MLP, naming each dimension logically (``"act_batch"``,
``"act_heads"``, ...). Without a mesh (``config.execution.mesh is None``) that is the
identity and the program is unchanged. With one, the names go through the rules
(``config.execution.rules``, default :data:`lrt_jax.parallel.DEFAULT_RULES`) to mesh
axes, and the value is pinned with ``jax.lax.with_sharding_constraint``: batch over
data × fsdp, heads and MLP width over tensor, and the residual stream's ``d_model``
unsharded, so GSPMD gathers weights (FSDP) instead of all-reducing activations.

A mesh axis that does not divide the dimension it would split is dropped for that
dimension (the value is replicated along it), as for parameters.
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jax.sharding import NamedSharding

from lrt_jax.config import ModelConfig

__all__ = ["activation_spec", "constrain"]


def activation_spec(config: ModelConfig, shape, axes: tuple[str | None, ...]):
    """The mesh ``PartitionSpec`` for an activation of ``shape`` with logical ``axes`` (``None`` without a mesh)."""
    execution = config.execution
    if execution.mesh is None:
        return None
    from lrt_jax.parallel.rules import DEFAULT_RULES, fit_spec_to_mesh  # parallel imports the model

    spec = nn.logical_to_mesh_axes(tuple(axes), execution.rules or DEFAULT_RULES)
    return fit_spec_to_mesh(shape, spec, execution.mesh)[0]


def constrain(config: ModelConfig, x: jax.Array, *axes: str | None) -> jax.Array:
    """``x`` pinned to the sharding its logical ``axes`` name on ``config.execution.mesh`` (identity without one).

    ``axes`` has one entry per dimension of ``x``; ``None`` leaves a dimension unsharded.
    """
    if len(axes) != x.ndim:
        raise ValueError(f"constrain got {len(axes)} logical axes {axes} for an array of rank {x.ndim}.")
    spec = activation_spec(config, x.shape, axes)
    if spec is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(config.execution.mesh, spec))
