"""Multi-host runs (TPU pods, multi-node GPU): process start-up and per-host data.

On a TPU pod every host runs the same command; ``initialize_distributed()`` (CLI flag
``--distributed``) calls ``jax.distributed.initialize``, which discovers the
coordinator and the process ids from the TPU environment (on GPU clusters pass them,
or set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``). After
that ``jax.devices()`` lists the devices of all hosts and a mesh spans them.

Each host reads only its own slice of a global batch (``host_batch_slice``) and
``global_batch_from_host_slices`` assembles the global, batch-sharded array without
any host holding the whole batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from lrt_jax.parallel.rules import DEFAULT_RULES, Rules, batch_spec


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Start JAX's multi-process runtime (no-op if it is already running)."""
    if jax.distributed.is_initialized():
        return
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def host_batch_slice(global_batch_size: int) -> slice:
    """Rows of the global batch that this process loads (contiguous, equal parts)."""
    count, index = jax.process_count(), jax.process_index()
    if global_batch_size % count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {count} processes; "
            "make the batch a multiple of the process count."
        )
    per_host = global_batch_size // count
    return slice(index * per_host, (index + 1) * per_host)


def global_batch_from_host_slices(local_rows, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> jax.Array:
    """Assemble a batch-sharded global array from each process's ``local_rows``."""
    local_rows = np.asarray(local_rows)
    sharding = NamedSharding(mesh, batch_spec(rules, local_rows.ndim))
    return jax.make_array_from_process_local_data(sharding, local_rows)
