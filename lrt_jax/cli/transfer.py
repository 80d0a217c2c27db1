"""``lrt-jax transfer``: fit a ridge map between two models and carry a steering vector through it.

Both models read the same prompts; the activation of each prompt (its last token, or
the mean over its tokens — tokenizers differ, so tokens do not pair up) at
``--source-site`` and ``--target-site`` forms a paired row. A ridge map with its
penalty chosen by GCV is fitted on all but a held-out share of the rows, whose R² is
reported. The saved vector is mapped with ``--mode linear`` (``v @ A``) or
``affine`` (``v @ A + b``); the two controls of an LRT comparison are written beside
it: a random vector of the same norm and the source vector unmapped (zero-padded or
truncated to the target width).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lrt_jax.cli._common import add_mesh_argument, add_output_argument, check_limit, read_prompts
from lrt_jax.outputs import prepare_output_dir, write_json_atomic

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


def register(subparsers) -> None:
    parser = subparsers.add_parser("transfer", help="fit a source→target ridge map and transfer a steering vector")
    parser.add_argument("--source", required=True, help="source HF checkpoint directory")
    parser.add_argument("--target", required=True, help="target HF checkpoint directory")
    parser.add_argument("--prompts", required=True, type=Path,
                        help="text file (one prompt per line) or a CAA A/B .json file (its questions)")
    parser.add_argument("--source-site", required=True)
    parser.add_argument("--target-site", required=True)
    parser.add_argument("--vector", required=True, type=Path, help="source vector <name>.safetensors")
    parser.add_argument("--mode", choices=["linear", "affine"], default="linear")
    parser.add_argument("--native", type=Path, default=None, help="target-native vector, to report the cosine with")
    parser.add_argument("--reduce", choices=["last", "mean"], default="last")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of prompts held out for R² (default 0.2)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random control vector")
    add_output_argument(parser, "out/transfer")
    add_mesh_argument(parser)
    parser.set_defaults(func=run)


def read_prompt_texts(path: Path) -> list[str]:
    """Prompts from a text file, or the questions of a CAA A/B ``.json`` file."""
    from lrt_jax import tasks

    if path.suffix == ".json":
        return [item.question for item in tasks.load_caa_ab(path)]
    return read_prompts(path)


def run(args) -> int:
    import jax

    from lrt_jax import mappers, metrics, steering
    from lrt_jax.cli._runtime import prepare_model
    from lrt_jax.lrt import reduced_activations
    from lrt_jax.sites import check_site, site_width

    check_limit(args)
    vector_files = [f"{name}.{suffix}" for name in ("transferred", "random", "unmapped") for suffix in ("safetensors", "json")]
    out = prepare_output_dir(args.out, "transfer", ("map", "transfer.json", *vector_files), overwrite=args.overwrite)
    prompts = read_prompt_texts(args.prompts)[:args.limit]
    n_train = int(round(len(prompts) * (1 - args.holdout)))
    if n_train < 2 or n_train == len(prompts):
        raise ValueError(f"{len(prompts)} prompts with --holdout {args.holdout} leave {n_train} to fit and "
                         f"{len(prompts) - n_train} to test; give more prompts or another --holdout in (0, 1).")
    vector = steering.load_vector(args.vector)
    acts = {}
    for role, model, site in (("source", args.source, args.source_site), ("target", args.target, args.target_site)):
        lm, place_batch, batch_size = prepare_model(argparse.Namespace(**{**vars(args), "model": model}))
        check_site(lm.config, site)
        if role == "source":
            steering.check_vector_fits(vector, site=site, d_model=site_width(lm.config, site))
        else:
            target_name, target_width = lm.name, site_width(lm.config, site)
        acts[role] = reduced_activations(lm, prompts, site, reduce=args.reduce, batch_size=batch_size,
                                         place_batch=place_batch, progress=True, desc=role)
        del lm  # one model in memory at a time

    mapper = mappers.ridge(alphas=RIDGE_ALPHAS, select="gcv")
    state = mapper.fit(acts["source"][:n_train], acts["target"][:n_train])
    r2 = float(metrics.r2_score(acts["target"][n_train:], mapper.apply(state, acts["source"][n_train:])))
    map_info = {"solver": "ridge", "select": "gcv", "alpha": f"{float(state.alpha):g}", "source_model": args.source,
                "target_model": args.target, "source_site": args.source_site, "target_site": args.target_site,
                "reduce": args.reduce, "n_train": str(n_train), "heldout_r2": f"{r2:.6g}"}
    mappers.save_map(str(out.path("map")), state, map_info)

    native = steering.load_vector(args.native) if args.native else None
    result = steering.transfer_vector(vector, state, mode=args.mode, target_model=target_name,
                                      target_site=args.target_site, native=native, map_info=map_info)
    written = {
        "transferred": result.vector,
        "random": steering.random_vector_like(result.vector, jax.random.key(args.seed)),
        "unmapped": steering.unmapped_vector(vector, target_width, target_model=target_name,
                                             target_site=args.target_site),
    }
    for name, saved in written.items():
        steering.save_vector(out.path(f"{name}.safetensors"), saved)
    summary = {"heldout_r2": r2, "ridge_alpha": float(state.alpha), "n_train": n_train,
               "n_heldout": len(prompts) - n_train, "cosine_with_native": result.cosine_with_native}
    write_json_atomic(out.path("transfer.json"), summary)
    out.finish()
    print(f"ridge map ({args.source_site} → {args.target_site}, α={float(state.alpha):g}): held-out R² = {r2:.4f} "
          f"on {len(prompts) - n_train} prompts")
    if result.cosine_with_native is not None:
        print(f"cosine(transferred, native) = {result.cosine_with_native:.4f}")
    print(f"wrote {', '.join(f'{n}.safetensors' for n in written)} and map/ to {args.out}")
    return 0
