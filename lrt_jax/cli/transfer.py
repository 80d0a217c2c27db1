"""``lrt-jax transfer``: carry a steering vector into another model through a map.

With ``--map`` the map is one saved by ``lrt-jax fit`` (or ``save_map``): nothing is
captured or fitted, and the map's record is checked against the vector (its source
site and width) and against ``--source``/``--target``/``--source-site``/``--target-site``
when those are given.

Without ``--map`` a ridge map (penalty chosen by GCV) is fitted here: both models read
the same prompts; the activation of each prompt (its last token, or the mean over its
tokens — tokenizers differ, so tokens do not pair up) at ``--source-site`` and
``--target-site`` forms a paired row; a held-out share of the rows gives its R²; the
map is saved as ``map.safetensors`` beside the vectors.

The vector is mapped with ``--mode linear`` (``v @ A``) or ``affine`` (``v @ A + b``);
the two controls of an LRT comparison are written beside it: a random vector of the
same norm and the source vector unmapped (zero-padded or truncated to the target width).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lrt_jax.cli._common import add_mesh_argument, add_output_argument, check_limit, read_prompts
from lrt_jax.cli.fit import build_mapper, fit_with_holdout, rows_to_fit
from lrt_jax.outputs import prepare_output_dir, write_json_atomic

FIT_ARGUMENTS = ("source", "target", "prompts", "source_site", "target_site")


def register(subparsers) -> None:
    parser = subparsers.add_parser("transfer", help="map a steering vector into another model (saved or new map)")
    parser.add_argument("--map", type=Path, default=None,
                        help="a saved map (map.safetensors, or an `lrt-jax fit` --out dir): apply it, fit nothing")
    parser.add_argument("--source", help="source HF checkpoint directory (needed without --map)")
    parser.add_argument("--target", help="target HF checkpoint directory (needed without --map)")
    parser.add_argument("--prompts", type=Path,
                        help="text file (one prompt per line) or a CAA A/B .json file (its questions); without --map")
    parser.add_argument("--source-site")
    parser.add_argument("--target-site")
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


def fit_map(args, vector, out):
    """Capture both models on ``--prompts``, fit a GCV ridge map, save it in ``out``: a ``LoadedMap``."""
    from lrt_jax import mappers, steering
    from lrt_jax.cli._runtime import prepare_model
    from lrt_jax import capture_texts
    from lrt_jax.sites import check_site, site_width

    prompts = read_prompt_texts(args.prompts)[:args.limit]
    rows_to_fit(len(prompts), args.holdout)
    acts, names = {}, {}
    for role, model, site in (("source", args.source, args.source_site), ("target", args.target, args.target_site)):
        lm, place_batch, batch_size = prepare_model(argparse.Namespace(**{**vars(args), "model": model}))
        check_site(lm.config, site)
        if role == "source":
            steering.check_vector_fits(vector, site=site, d_model=site_width(lm.config, site))
        names[role] = lm.name
        acts[role] = capture_texts(lm, prompts, [site], position=args.reduce, batch_size=batch_size,
                                   place_batch=place_batch, desc=role)[site]
        del lm  # one model in memory at a time

    mapper, hyperparameters = build_mapper("ridge")
    state, n_fit, r2 = fit_with_holdout(mapper, acts["source"], acts["target"], args.holdout)
    info = mappers.MapInfo(
        source_model=names["source"], target_model=names["target"], source_site=args.source_site,
        target_site=args.target_site, source_width=int(acts["source"].shape[1]),
        target_width=int(acts["target"].shape[1]), solver="ridge",
        hyperparameters={**hyperparameters, "alpha": float(state.alpha)}, n_fit=n_fit, reduce=args.reduce,
        dataset=str(args.prompts), heldout_r2=r2)
    path = mappers.save_map(state, out.path("map.safetensors"), info)
    return mappers.LoadedMap(state, info, path)


def saved_map(args, vector):
    """The ``--map`` file, checked against the vector and the model/site options given."""
    from lrt_jax import mappers

    loaded = mappers.load_map(args.map, source_site=vector.metadata.site, source_width=vector.metadata.d_model)
    return loaded.check(source_model=args.source, target_model=args.target, source_site=args.source_site,
                        target_site=args.target_site)


def run(args) -> int:
    import jax

    from lrt_jax import steering

    check_limit(args)
    missing = [f"--{name.replace('_', '-')}" for name in FIT_ARGUMENTS if getattr(args, name) is None]
    if missing and not args.map:
        raise ValueError(f"transfer without --map fits a map and needs {', '.join(missing)}; give them, or a "
                         "saved map with --map.")
    if args.map and args.prompts:
        raise ValueError("--map applies a saved map, so --prompts (read to fit one) would be ignored; drop one.")
    vector_files = [f"{name}.safetensors" for name in ("transferred", "random", "unmapped")]
    map_files = () if args.map else ("map.safetensors",)
    out = prepare_output_dir(args.out, "transfer", (*map_files, "transfer.json", *vector_files),
                             overwrite=args.overwrite)
    vector = steering.load_vector(args.vector)
    loaded = saved_map(args, vector) if args.map else fit_map(args, vector, out)
    info = loaded.info
    native = steering.load_vector(args.native, site=info.target_site, d_model=info.target_width) if args.native else None
    controls = steering.with_controls(vector, loaded, key=jax.random.key(args.seed), target_model=info.target_model,
                                      target_site=info.target_site, modes=(args.mode,), map_info=info.summary())
    written = {"transferred": controls[f"transferred_{args.mode}"], "random": controls["random"],
               "unmapped": controls["unmapped"]}
    cosine = steering.transfer_diagnostics(vector, written["transferred"], native).cosine_with_native
    cosine = None if cosine is None else float(cosine)
    for name, saved in written.items():
        steering.save_vector(saved, out.path(f"{name}.safetensors"))
    summary = {"map": str(loaded.path), "mode": args.mode, "solver": info.solver,
               "hyperparameters": {k: v for k, v in info.hyperparameters.items() if k != "alphas"},
               "heldout_r2": info.heldout_r2, "n_fit": info.n_fit, "cosine_with_native": cosine}
    write_json_atomic(out.path("transfer.json"), summary)
    out.finish()
    r2 = "not measured" if info.heldout_r2 is None else f"{info.heldout_r2:.4f}"
    print(f"{info.solver} map {loaded.path} ({info.source_site} → {info.target_site}): held-out R² = {r2}")
    if cosine is not None:
        print(f"cosine(transferred, native) = {cosine:.4f}")
    print(f"wrote {', '.join(vector_files)} to {args.out}")
    return 0
