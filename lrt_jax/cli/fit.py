"""``lrt-jax fit``: fit a map between two models' captured activations and save it.

Input: two ``lrt-jax capture`` output directories, one per model, captured on the
same prompts with the same ``--reduce`` (``last`` or ``mean``; token-level captures
do not pair up across tokenizers). Row ``i`` of ``--source-site`` in the source
capture and of ``--target-site`` in the target capture form a pair.

The map is fitted by ``--solver`` on the first rows, and its R² is measured on the
last ``--holdout`` share of them (contiguous, so a run is reproducible without a
seed). ``--out`` receives ``map.safetensors`` (the state and its
:class:`~lrt_jax.mappers.MapInfo`: models, sites, widths, solver; read it with
``lrt_jax.mappers.load_map`` or ``lrt-jax transfer --map``) and ``fit.json`` (the
report).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lrt_jax.cli._common import add_output_argument
from lrt_jax.outputs import prepare_output_dir, write_json_atomic

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
SOLVERS = ("ridge", "lstsq", "procrustes", "reduced_rank", "cca")


def register(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="fit a source→target map from two `capture` outputs and save it")
    parser.add_argument("--source", required=True, type=Path, help="`lrt-jax capture` output dir of the source model")
    parser.add_argument("--target", required=True, type=Path, help="`lrt-jax capture` output dir of the target model")
    parser.add_argument("--source-site", default=None, help="site in the source capture (default: its only site)")
    parser.add_argument("--target-site", default=None, help="site in the target capture (default: its only site)")
    parser.add_argument("--solver", choices=SOLVERS, default="ridge",
                        help="ridge (default; α by GCV over 1e-3..1e5 unless --alpha), lstsq, procrustes, "
                             "reduced_rank or cca (both need --rank)")
    parser.add_argument("--alpha", type=float, default=None, help="fixed ridge penalty (ridge, reduced_rank, cca)")
    parser.add_argument("--rank", type=int, default=None, help="rank of reduced_rank / number of CCA pairs")
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="share of rows held out for R² (default 0.2; 0 fits on every row)")
    add_output_argument(parser, "out/fit")
    parser.set_defaults(func=run)


def build_mapper(solver: str, *, alpha: float | None = None, rank: int | None = None):
    """``(mapper, hyperparameters)`` for a ``--solver`` name and its options."""
    from lrt_jax import mappers

    if solver in ("reduced_rank", "cca") and rank is None:
        raise ValueError(f"--solver {solver} needs --rank (the rank of the map / the number of canonical pairs).")
    if solver == "ridge" and alpha is None:
        return mappers.ridge(alphas=RIDGE_ALPHAS, select="gcv"), {"select": "gcv", "alphas": list(RIDGE_ALPHAS)}
    if solver == "ridge":
        return mappers.ridge(alpha), {"alpha": alpha}
    if solver == "lstsq":
        return mappers.lstsq(), {}
    if solver == "procrustes":
        return mappers.procrustes(), {}
    factory = mappers.reduced_rank if solver == "reduced_rank" else mappers.cca
    return factory(rank, alpha or 0.0), {"rank": rank, "alpha": alpha or 0.0}


def rows_to_fit(n: int, holdout: float) -> int:
    """How many of ``n`` rows to fit on, leaving a ``holdout`` share to test; refuses an empty side."""
    if not 0 <= holdout < 1:
        raise ValueError(f"--holdout {holdout}: give a share of rows in [0, 1).")
    n_fit = int(round(n * (1 - holdout)))
    if n_fit < 2 or (holdout > 0 and n_fit == n):
        raise ValueError(f"{n} rows with --holdout {holdout} leave {n_fit} to fit and {n - n_fit} to test; "
                         "give more prompts or another --holdout.")
    return n_fit


def fit_with_holdout(mapper, x, y, holdout: float):
    """Fit on the first rows and score R² on the last ``holdout`` share.

    Returns:
      ``(state, n_fit, heldout_r2)``; ``heldout_r2`` is ``None`` when ``holdout`` is 0.
    """
    from lrt_jax import metrics

    n, n_fit = len(x), rows_to_fit(len(x), holdout)
    state = mapper.fit(x[:n_fit], y[:n_fit])
    if n_fit == n:
        return state, n_fit, None
    return state, n_fit, float(metrics.r2_score(y[n_fit:], mapper.apply(state, x[n_fit:])))


def read_capture(directory: Path, site: str | None, role: str):
    """``(metadata, rows [n, d])`` of one site of an ``lrt-jax capture`` output directory."""
    from safetensors.numpy import load_file

    record, tensors = directory / "activations.json", directory / "activations.safetensors"
    for path in (record, tensors):
        if not path.exists():
            raise FileNotFoundError(f"--{role} {directory}: {path.name} is missing; give the --out directory of an "
                                    "`lrt-jax capture` run.")
    metadata = json.loads(record.read_text())
    sites = metadata.get("sites", [])
    if site is None:
        if len(sites) != 1:
            raise ValueError(f"--{role} {directory} holds sites {sites}; choose one with --{role}-site.")
        site = sites[0]
    if site not in sites:
        raise ValueError(f"--{role}-site {site}: {directory} holds only {sites}; capture that site first.")
    if metadata.get("reduce") not in ("last", "mean"):
        raise ValueError(f"--{role} {directory} was captured with --reduce {metadata.get('reduce')}; tokens do not "
                         "pair up across models, so capture with --reduce last or mean.")
    return {**metadata, "site": site}, load_file(str(tensors))[site]


def _check_paired(source: dict, target: dict, x, y) -> None:
    if len(x) != len(y):
        raise ValueError(f"the source capture has {len(x)} rows and the target capture {len(y)}; capture both "
                         "models on the same prompts file.")
    if source["reduce"] != target["reduce"]:
        raise ValueError(f"the source was captured with --reduce {source['reduce']} and the target with "
                         f"{target['reduce']}; capture both the same way.")
    files = [Path(m.get("prompts_file") or "") for m in (source, target)]
    if all(f.is_file() for f in files) and files[0].read_bytes() != files[1].read_bytes():
        raise ValueError(f"the captures read different prompts ({files[0]} and {files[1]}); rows pair up only "
                         "when both models read the same prompts.")


def run(args) -> int:
    from lrt_jax import mappers

    mapper, hyperparameters = build_mapper(args.solver, alpha=args.alpha, rank=args.rank)
    out = prepare_output_dir(args.out, "fit", ("map.safetensors", "fit.json"), overwrite=args.overwrite)
    source, x = read_capture(args.source, args.source_site, "source")
    target, y = read_capture(args.target, args.target_site, "target")
    _check_paired(source, target, x, y)
    state, n_fit, r2 = fit_with_holdout(mapper, x, y, args.holdout)
    if isinstance(state, mappers.RidgeState):
        hyperparameters["alpha"] = float(state.alpha)
    info = mappers.MapInfo(
        source_model=source["model"], target_model=target["model"], source_site=source["site"],
        target_site=target["site"], source_width=int(x.shape[1]), target_width=int(y.shape[1]),
        solver=args.solver, hyperparameters=hyperparameters, n_fit=n_fit, reduce=source["reduce"],
        dataset=str(source.get("prompts_file", "")), heldout_r2=r2)
    mappers.save_map(state, out.path("map.safetensors"), info)
    report = {**info.to_dict(), "n_heldout": len(x) - n_fit, "source_capture": str(args.source),
              "target_capture": str(args.target), "map": "map.safetensors"}
    write_json_atomic(out.path("fit.json"), report)
    out.finish()
    scored = f"held-out R² = {r2:.4f} on {len(x) - n_fit} rows" if r2 is not None else "no rows held out"
    print(f"{args.solver} map ({info.source_site} → {info.target_site}, {info.source_width} → "
          f"{info.target_width}, {n_fit} rows): {scored}")
    print(f"wrote map.safetensors and fit.json to {args.out}")
    return 0
