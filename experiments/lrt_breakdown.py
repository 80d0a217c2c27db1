"""Where does affine transfer stop working? The LRT experiment over the organism zoo, one factor at a time.

The source is the ``small`` organism; each target differs from the demo's ``large`` in one
factor (:data:`lrt_jax.lrt.breakdown.ZOO`): initialisation seed, family (mixtral MoE,
Gemma-2), width ×4, the training corpus (shifted template mix and attribute frequencies,
same tokenizer) and the tokenizer (a BPE, paired with the source word by word). For every
target the LRT experiment (:func:`lrt_jax.lrt.run_lrt_experiment`: ridge maps, CAA
vectors for four attributes, transferred ``A v``/``A v + b``, random and unmapped
controls, an α sweep on held-out probe prompts) runs, and :mod:`lrt_jax.lrt.breakdown` scores steering preservation and
per-prompt correlations with 95% bootstrap intervals over prompts.

Organisms are trained on first use and cached (about 1–3 min each on two cores).

    python experiments/lrt_breakdown.py                       # the whole zoo → experiments/results/lrt_breakdown/
    python experiments/lrt_breakdown.py --targets large,large-bpe --alpha 2
    python experiments/lrt_breakdown.py --tiny                # seconds-scale organisms: a smoke run

Writes ``breakdown.{json,csv,md,png}`` and the full LRT report under ``lrt/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from lrt_jax import lrt
from lrt_jax.lrt.breakdown import ZOO, breakdown_rows, write_breakdown
from lrt_jax.lrt.demo import demo_config, held_out_texts
from lrt_jax.organisms import organism, organism_path
from lrt_jax.organisms.recipes import get_recipe

RESULTS = Path(__file__).parent / "results"


def load_timed(name: str) -> tuple[object, float, bool]:
    """The organism ``name``, the seconds it took, and whether it was trained now (a cache miss)."""
    cached = organism_path(get_recipe(name)).is_dir()
    start = time.perf_counter()
    lm = organism(name)
    return lm, time.perf_counter() - start, not cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(f.target for f in ZOO),
                        help="comma-separated zoo targets (default: all of lrt_jax.lrt.breakdown.ZOO)")
    parser.add_argument("--alpha", type=float, default=1.0, help="strength scored, × the residual norm")
    parser.add_argument("--n-fit-texts", type=int, default=400)
    parser.add_argument("--n-pairs", type=int, default=64)
    parser.add_argument("--n-probe-prompts", type=int, default=64)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--tiny", action="store_true", help="tiny organisms and few prompts: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "lrt_breakdown")
    args = parser.parse_args()

    factors = {f.target: f for f in ZOO}
    names = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = [name for name in names if name not in factors]
    if unknown:
        raise SystemExit(f"unknown zoo targets {unknown}; the zoo is {list(factors)}.")
    prefix = "tiny-" if args.tiny else ""
    source, seconds, trained = load_timed(prefix + "small")
    timings = {source.name: {"seconds": seconds, "trained": trained}}
    targets = {}
    for name in names:
        lm, seconds, trained = load_timed(prefix + name)
        timings[lm.name] = {"seconds": seconds, "trained": trained}
        targets[lm.name] = lm
    sizes = (dict(n_fit_texts=60, n_pairs=16, n_probe_prompts=16, n_random=2, max_new_tokens=4) if args.tiny else
             dict(n_fit_texts=args.n_fit_texts, n_pairs=args.n_pairs, n_probe_prompts=args.n_probe_prompts))
    config = dataclasses.replace(demo_config(source, targets, lrt.LRTConfig.attributes, False, args.seed), **sizes,
                                 alphas=tuple(sorted({0.0, 0.5, 1.0, 2.0, args.alpha})))
    start = time.perf_counter()
    result = lrt.run_lrt_experiment(source, targets, held_out_texts(config.n_fit_texts, args.seed), config)
    experiment_seconds = time.perf_counter() - start
    lrt.write_report(result, args.out / "lrt")
    rows = breakdown_rows(result, {prefix + n: factors[n].name for n in names}, alpha=args.alpha,
                          n_resamples=args.resamples, seed=args.seed)
    extra = {"source": source.name, "factors": [dataclasses.asdict(factors[n]) for n in names],
             "config": dataclasses.asdict(config), "organism_seconds": timings,
             "experiment_seconds": experiment_seconds}
    print(write_breakdown(rows, args.out, alpha=args.alpha, extra=extra))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
