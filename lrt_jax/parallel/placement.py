"""Putting parameters and batches onto a mesh.

Sharding never changes numbers: ``forward``/``capture``/``generate`` are jitted, and
jit follows the shardings of its inputs. So running sharded is placing the inputs:
parameters by the logical-axis rules (:mod:`lrt_jax.parallel.rules`), token batches
along the ``batch`` rule (data × fsdp by default). Outputs come back sharded the same
way along the batch.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from lrt_jax.lm import LM
from lrt_jax.parallel.rules import DEFAULT_RULES, Rules, batch_spec, check_divisible, param_shardings


def shard_params(params, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """Place every parameter by the rules (a dimension the mesh does not divide is replicated, with a warning)."""
    return jax.device_put(params, param_shardings(params, mesh, rules))


def shard_lm(lm: LM, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> LM:
    """``lm`` with its parameters sharded over ``mesh``, and its activations constrained by the same ``rules``.

    The mesh and rules go into ``lm.config.execution``, so every jitted entry point
    (forward, capture, generate, the scorers) pins activations: batch over data × fsdp,
    heads and MLP width over tensor, the residual stream's ``d_model`` unsharded.
    """
    execution = dataclasses.replace(lm.config.execution, mesh=mesh, rules=() if rules == DEFAULT_RULES else rules)
    return lm._replace(config=lm.config.replace(execution=execution), params=shard_params(lm.params, mesh, rules))


def shard_batch(array, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> jax.Array:
    """Place a ``[batch, ...]`` array (tokens, masks, activations) split along its batch axis."""
    array = np.asarray(array) if not isinstance(array, jax.Array) else array
    spec = batch_spec(rules, array.ndim)
    check_divisible(array.shape, spec, mesh, f"batch of shape {tuple(array.shape)}")
    return jax.device_put(array, NamedSharding(mesh, spec))


def local_shard_shapes(array: jax.Array) -> list[tuple[int, ...]]:
    """Shapes of the pieces of ``array`` held by each addressable device."""
    return [tuple(shard.data.shape) for shard in array.addressable_shards]
