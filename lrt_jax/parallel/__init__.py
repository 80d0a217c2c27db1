"""Sharding: meshes, logical axis rules, placement of parameters and batches, multi-host start-up.

Typical use::

    mesh = lrt_jax.parallel.make_mesh("data=4,fsdp=2,tensor=1")
    lm = lrt_jax.parallel.shard_lm(lm, mesh)
    tokens = lrt_jax.parallel.shard_batch(tokens, mesh)
    acts = lrt_jax.capture(lm, tokens, sites)       # runs sharded; activations split on the batch
"""

from lrt_jax.parallel.distributed import global_batch_from_host_slices, host_batch_slice, initialize_distributed
from lrt_jax.parallel.mesh import MESH_AXES, MeshError, describe_mesh, make_mesh, parse_mesh_spec
from lrt_jax.parallel.plan import Plan, plan
from lrt_jax.parallel.placement import local_shard_shapes, shard_batch, shard_lm, shard_params
from lrt_jax.parallel.rules import (
    DEFAULT_RULES, PARAM_LOGICAL_AXES, batch_spec, logical_axes_of_params, param_shardings)

__all__ = [
    "batch_spec",
    "DEFAULT_RULES",
    "describe_mesh",
    "global_batch_from_host_slices",
    "host_batch_slice",
    "initialize_distributed",
    "local_shard_shapes",
    "logical_axes_of_params",
    "make_mesh",
    "MESH_AXES",
    "MeshError",
    "PARAM_LOGICAL_AXES",
    "param_shardings",
    "parse_mesh_spec",
    "Plan",
    "plan",
    "shard_batch",
    "shard_lm",
    "shard_params",
]
