"""Which mapper preserves what? The solver benchmark of ``lrt-jax bench`` over several organism pairs.

For each source → target pair (default ``small → large`` and ``small → moe``), every
solver of :func:`lrt_jax.lrt.default_solvers` is fitted on every layer pair and scored
on held-out rows (R², CKA, cosine, mutual k-NN, steering preservation per attribute,
substitution KL, fit seconds, with bootstrap intervals), and the layer-pairing rules
are compared (:func:`lrt_jax.lrt.run_bench`). Each pair's full report goes to
``--out/<source>-<target>/``; the summary — per pair, the solver whose steering
preservation is closest to 1, the Spearman ρ of R² against steering preservation over
solvers × layer pairs, and the best layer rule — to ``bench_mapper_quality.json`` and
``.md`` beside them.

    python experiments/bench_mapper_quality.py                      # ~10 min per pair on 2 cores
    python experiments/bench_mapper_quality.py --pairs small:large --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lrt_jax import lrt
from lrt_jax.lrt.bench_report import plot_r2_vs_steering, solver_means
from lrt_jax.lrt.demo import held_out_texts
from lrt_jax.organisms import organism
from lrt_jax.outputs import prepare_output_dir, write_json_atomic, write_text_atomic


def summarise(result: lrt.BenchResult, out: Path) -> dict:
    """The headline numbers of one pair (module docstring)."""
    means = solver_means(result)
    finite = {name: scores for name, scores in means.items() if scores["steering_preservation"] == scores[
        "steering_preservation"]}
    best = min(finite, key=lambda name: abs(1.0 - finite[name]["steering_preservation"])) if finite else None
    return {"source": result.source, "target": result.target, "best_solver": best,
            "best_solver_scores": means.get(best), "best_r2_solver": max(means, key=lambda n: means[n]["r2"]),
            "spearman_r2_vs_steering": plot_r2_vs_steering(result, out / "r2_vs_steering.png"),
            "layer_rule_reached": result.layer_choice.reached, "best_layer_rule": result.layer_choice.best_rule,
            "wall_seconds": result.wall_seconds}


def markdown(summaries: list[dict]) -> str:
    lines = ["| pair | closest-to-1 steering solver | its preservation | its R² | highest-R² solver | "
             "Spearman ρ (R², steering) | best layer rule | s |", "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        scores = s["best_solver_scores"] or {}
        lines.append(f"| {s['source']} → {s['target']} | `{s['best_solver']}` | "
                     f"{scores.get('steering_preservation', float('nan')):.3f} | {scores.get('r2', float('nan')):.3f} | "
                     f"`{s['best_r2_solver']}` | {s['spearman_r2_vs_steering']:.2f} | {s['best_layer_rule']} | "
                     f"{s['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="small:large,small:moe", help="source:target organism pairs")
    parser.add_argument("--quick", action="store_true", help="tiny organisms and small numbers (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("out/bench_mapper_quality"))
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pairs = [tuple(part.split(":")) for part in args.pairs.split(",") if part.strip()]
    names = [f"{s}-{t}" for s, t in pairs]
    out = prepare_output_dir(args.out, "bench_mapper_quality", ("bench_mapper_quality.json", "bench_mapper_quality.md",
                                                                *names), overwrite=args.overwrite)
    prefix = "tiny-" if args.quick else ""
    config = (lrt.BenchConfig(max_test_rows=128, n_substitution_texts=8, n_pairs=12, n_probe_prompts=12,
                              gradient_steps=100, n_bootstrap=100, seed=args.seed) if args.quick
              else lrt.BenchConfig(seed=args.seed))
    texts = held_out_texts(60 if args.quick else 200, args.seed)
    summaries = []
    for (source_name, target_name), name in zip(pairs, names):
        result = lrt.run_bench(organism(prefix + source_name), organism(prefix + target_name), texts, config)
        lrt.write_bench_report(result, out.path(name))
        summaries.append(summarise(result, out.path(name)))
    write_json_atomic(out.path("bench_mapper_quality.json"), summaries)
    write_text_atomic(out.path("bench_mapper_quality.md"), markdown(summaries))
    out.finish()
    print(markdown(summaries))


if __name__ == "__main__":
    main()
