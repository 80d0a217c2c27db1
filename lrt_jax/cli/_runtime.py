"""Loading a model for a subcommand, optionally distributed and sharded over a mesh."""

from __future__ import annotations


def prepare_model(args):
    """``(lm, place_batch)``: the loaded model and a function that places a batch like the model.

    With ``--mesh`` the parameters are sharded by the default logical-axis rules and
    batches are split along the batch axis; otherwise both stay on the default device.
    """
    import lrt_jax
    from lrt_jax import parallel

    if getattr(args, "distributed", False):
        parallel.initialize_distributed()
    lm = lrt_jax.load(args.model)
    if not getattr(args, "mesh", None):
        return lm, lambda array: array
    mesh = parallel.make_mesh(args.mesh)
    print(f"mesh: {parallel.describe_mesh(mesh)}")
    return parallel.shard_lm(lm, mesh), lambda array: parallel.shard_batch(array, mesh)
