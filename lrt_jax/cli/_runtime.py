"""Loading a model for a subcommand, optionally distributed and sharded over a mesh."""

from __future__ import annotations


def prepare_model(args):
    """``(lm, place_batch, batch_multiple)`` for a subcommand.

    With ``--mesh`` the parameters are loaded straight into their shardings (default
    logical-axis rules), ``place_batch`` splits a batch along the batch axis, and
    batch sizes must be multiples of ``batch_multiple`` (the batch axis's device
    count); otherwise everything stays on the default device.
    """
    import lrt_jax
    from lrt_jax import parallel

    if getattr(args, "distributed", False):
        parallel.initialize_distributed()
    if not getattr(args, "mesh", None):
        return lrt_jax.load(args.model), lambda array: array, 1
    mesh = parallel.make_mesh(args.mesh)
    print(f"mesh: {parallel.describe_mesh(mesh)}")
    batch_axes = parallel.batch_spec(parallel.DEFAULT_RULES)[0] or ()
    batch_multiple = 1
    for axis in (batch_axes,) if isinstance(batch_axes, str) else batch_axes:
        batch_multiple *= mesh.shape[axis]
    return lrt_jax.load(args.model, mesh=mesh), lambda array: parallel.shard_batch(array, mesh), batch_multiple
