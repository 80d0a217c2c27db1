"""Loading a model for a subcommand, optionally distributed and sharded over a mesh."""

from __future__ import annotations


def prepare_model(args):
    """``(lm, place_batch, batch_size)`` for a subcommand with ``--model`` and ``--batch-size``.

    With ``--mesh`` the parameters are loaded straight into their shardings (default
    logical-axis rules), ``place_batch`` splits a batch along the batch axis, and
    ``batch_size`` is ``args.batch_size`` rounded up to a multiple of the batch axis's
    device count, so every batch divides over it; otherwise everything stays on the
    default device and ``batch_size`` is ``args.batch_size``.
    """
    import lrt_jax
    from lrt_jax import parallel

    if getattr(args, "distributed", False):
        parallel.initialize_distributed()
    if not getattr(args, "mesh", None):
        return lrt_jax.load(args.model), lambda array: array, args.batch_size
    mesh = parallel.make_mesh(args.mesh)
    print(f"mesh: {parallel.describe_mesh(mesh)}")
    batch_axes = parallel.batch_spec(parallel.DEFAULT_RULES)[0] or ()
    batch_multiple = 1
    for axis in (batch_axes,) if isinstance(batch_axes, str) else batch_axes:
        batch_multiple *= mesh.shape[axis]
    batch_size = -(-args.batch_size // batch_multiple) * batch_multiple
    return lrt_jax.load(args.model, mesh=mesh), lambda array: parallel.shard_batch(array, mesh), batch_size
