"""``lrt-jax capture``: activations of a checkpoint on a file of prompts, saved as safetensors + JSON."""

from __future__ import annotations

from lrt_jax.cli._common import add_mesh_argument, add_model_argument, add_output_argument, read_prompts
from lrt_jax.outputs import atomic_path, prepare_output_dir, write_json_atomic


def register(subparsers) -> None:
    parser = subparsers.add_parser("capture", help="capture activations at named sites for a file of prompts")
    add_model_argument(parser)
    parser.add_argument("--prompts", required=True, help="text file, one prompt per line")
    parser.add_argument("--sites", required=True, help="comma-separated sites, e.g. layers.3.resid_post,final_norm")
    parser.add_argument("--reduce", choices=["last", "mean", "none"], default="last",
                        help="last real token (default), mean over real tokens, or every position (left-padded to "
                             "the longest prompt; activations.json records the padding)")
    parser.add_argument("--batch-size", type=int, default=16)
    add_output_argument(parser, "out/capture")
    add_mesh_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import lrt_jax
    from lrt_jax.cli._runtime import prepare_model

    requested = [s.strip() for s in args.sites.split(",") if s.strip()]
    if not requested:
        raise ValueError(f"--sites {args.sites!r} names no site; give e.g. layers.3.resid_post,final_norm.")
    out = prepare_output_dir(args.out, "capture", ("activations.safetensors", "activations.json"),
                             overwrite=args.overwrite)
    prompts = read_prompts(args.prompts)
    lm, place_batch, batch_size = prepare_model(args)
    sites = lrt_jax.sites.check_sites(lm.config, requested)
    reduce = None if args.reduce == "none" else args.reduce
    arrays = lrt_jax.capture_texts(lm, prompts, sites, position=reduce, batch_size=batch_size,
                                   place_batch=place_batch, desc="capture", dtype=None)

    from safetensors.numpy import save_file

    with atomic_path(out.path("activations.safetensors")) as temporary:
        save_file(arrays, str(temporary))
    metadata = {"model": lm.name, "sites": list(sites), "reduce": args.reduce, "n_prompts": len(prompts),
                "padding": "left" if reduce is None else None,
                "prompts_file": str(args.prompts), "shapes": {s: list(a.shape) for s, a in arrays.items()}}
    write_json_atomic(out.path("activations.json"), metadata)
    out.finish()
    print(f"wrote {len(sites)} sites x {len(prompts)} prompts to {args.out / 'activations.safetensors'}")
    return 0
