"""``lrt-jax eval``: score saved steering vectors on a task file over an α grid.

Tasks: ``ab`` (CAA A/B), ``persona`` (yes/no), ``mc1`` / ``mc2`` (TruthfulQA), ``gsm8k``.
Vectors are given as ``name=path.safetensors``; all must belong to one site. Writes
``scores.json``, ``scores.csv`` and ``scores.png`` (mean score against α per vector)
to ``--out`` and prints the mean per vector × α. With ``--native NAME`` on a
propensity task it adds the LRT comparison of every other vector with that one
(``comparison.json``/``.csv``/``.png``, controls named ``random``/``unmapped`` dashed).
With ``--cost-texts FILE`` (one text per line) it also measures the cost of steering
on those texts — next-token KL to the unsteered model and perplexity per vector × α —
into ``cost.json``/``cost.csv`` and prints their means.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from lrt_jax.cli._common import add_mesh_argument, add_model_argument, add_output_argument, check_limit
from lrt_jax.cli.steer import add_prompt_format_arguments
from lrt_jax.outputs import prepare_output_dir

TASKS = ("ab", "persona", "mc1", "mc2", "gsm8k")
CONTROL_NAMES = ("random", "unmapped")


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="score steering vectors on a task file over a grid of strengths")
    add_model_argument(parser)
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--data", required=True, type=Path, help="the task file in its upstream format")
    parser.add_argument("--vector", action="append", default=[], metavar="NAME=PATH",
                        help="a vector to score, e.g. native=out/vec.safetensors (repeatable; none: unsteered)")
    parser.add_argument("--alphas", default="-4,-2,0,2,4", help="comma-separated strengths, or start:stop:count; write --alphas=-4,0,4 when the first is negative")
    parser.add_argument("--positions", choices=["all", "prompt", "last", "generated"], default="all")
    parser.add_argument("--normalize", choices=["none", "unit", "residual"], default="none")
    parser.add_argument("--metric", choices=["logit_diff", "p_matching"], default="logit_diff",
                        help="propensity metric of ab/persona")
    parser.add_argument("--native", default=None, help="name of the native vector for the LRT comparison")
    parser.add_argument("--cost-texts", type=Path, default=None, metavar="FILE",
                        help="plain texts, one per line: adds cost.json/cost.csv (next-token KL to the unsteered "
                             "model and perplexity per vector × alpha)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N items")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=256, help="gsm8k generation budget")
    add_prompt_format_arguments(parser)
    add_output_argument(parser, "out/eval")
    add_mesh_argument(parser)
    parser.set_defaults(func=run)


def parse_alphas(text: str) -> np.ndarray:
    """``"-4,0,4"`` or ``"-8:8:16"`` (start:stop:count, inclusive) → float32 ``[a]``."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            return np.linspace(float(start), float(stop), int(count), dtype=np.float32)
        return np.array([float(a) for a in text.split(",") if a.strip()], np.float32)
    except ValueError:
        raise ValueError(f"--alphas {text!r}: give comma-separated numbers or start:stop:count.") from None


def load_named_vectors(specs) -> dict:
    """``["name=path", ...]`` → ``{name: SteeringVector}``."""
    from lrt_jax import steering

    vectors = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator or not name or name in vectors:
            raise ValueError(f"--vector {spec!r}: expected a new NAME=PATH, e.g. native=out/vec.safetensors.")
        vectors[name] = steering.load_vector(path)
    return vectors


def summary_lines(table) -> list[str]:
    """Mean value over items for each metric × vector × α."""
    cells = defaultdict(list)
    for r in table.records:
        cells[(r.metric, r.vector, r.alpha)].append(r.value)
    lines = [f"{'metric':<15}{'vector':<14}{'alpha':>9}{'mean':>11}{'items':>7}"]
    for (metric, vector, alpha), values in sorted(cells.items()):
        lines.append(f"{metric:<15}{vector:<14}{alpha:>9.3g}{np.mean(values):>11.4f}{len(values):>7}")
    return lines


def read_cost_texts(path: Path) -> list[str]:
    """The non-blank lines of ``path``, stripped; one text each."""
    texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"--cost-texts {str(path)!r} has no non-blank lines; give one text per line.")
    return texts


def _score(lm, args, batch_size, vectors, alphas, site, fmt):
    from lrt_jax import evaluation, tasks

    steering_options = dict(vectors=vectors or None, alphas=alphas, site=site, positions=args.positions,
                            normalize=None if args.normalize == "none" else args.normalize, progress=True)
    task = f"{args.task}:{args.data.stem}"
    if args.task in ("ab", "persona"):
        load = tasks.load_caa_ab if args.task == "ab" else tasks.load_persona
        return evaluation.score_propensity(lm, load(args.data)[:args.limit], fmt=fmt, metric=args.metric,
                                           batch_size=batch_size, task=task, **steering_options)
    if args.task in ("mc1", "mc2"):
        items = tasks.load_truthfulqa_mc(args.data, targets=args.task)[:args.limit]
        return evaluation.score_multiple_choice(lm, items, fmt=fmt, batch_size=batch_size, task=task,
                                                **steering_options)
    items = tasks.load_gsm8k(args.data)[:args.limit]
    table, _ = evaluation.score_gsm8k(lm, items, fmt=fmt, max_new_tokens=args.max_new_tokens,
                                      batch_size=batch_size, task=task, **steering_options)
    return table


def run(args) -> int:
    from lrt_jax import evaluation, tasks
    from lrt_jax.cli._runtime import prepare_model
    from lrt_jax.results import plot_propensity_vs_alpha

    vectors = load_named_vectors(args.vector)
    sites = {vector.metadata.site for vector in vectors.values()}
    if len(sites) > 1:
        raise ValueError(f"The vectors belong to different sites {sorted(sites)}; score one site per run.")
    if args.native is not None and (args.native not in vectors or args.task not in ("ab", "persona")):
        raise ValueError(f"--native {args.native!r} must name one of the --vector names {sorted(vectors)} "
                         "and the task must be ab or persona (propensities).")
    alphas = parse_alphas(args.alphas) if vectors else np.zeros(1, np.float32)
    check_limit(args)
    cost_texts = read_cost_texts(args.cost_texts) if args.cost_texts is not None else None
    comparison_files = ("comparison.json", "comparison.csv", "comparison.png")
    out = prepare_output_dir(args.out, "eval", ("scores.json", "scores.csv", "scores.png", *comparison_files,
                                                "cost.json", "cost.csv", "cost_vs_effect.png"),
                             overwrite=args.overwrite)
    # The scorers place their own batches; parameters are sharded by --mesh.
    lm, _, batch_size = prepare_model(args)
    site = sites.pop() if sites else None
    table = _score(lm, args, batch_size, vectors, alphas, site, tasks.PromptFormat(args.format, args.system_prompt))

    table.to_json(out.path("scores.json"))
    table.to_csv(out.path("scores.csv"))
    metric = {"ab": args.metric, "persona": args.metric, "mc1": "mc1", "mc2": "mc2", "gsm8k": "exact_match"}
    plot_propensity_vs_alpha(table, out.path("scores.png"), metric=metric[args.task])
    print("\n".join(summary_lines(table)))
    if args.native is not None:
        comparison = evaluation.lrt_comparison(table, metric=args.metric, native=args.native)
        comparison.to_json(out.path("comparison.json"))
        comparison.to_csv(out.path("comparison.csv"))
        others = [name for name in vectors if name != args.native]
        evaluation.plot_lrt_comparison(table, out.path("comparison.png"), metric=args.metric, native=args.native,
                                       transferred=[n for n in others if n not in CONTROL_NAMES],
                                       controls=[n for n in others if n in CONTROL_NAMES])
        print(evaluation.format_lrt_comparison(comparison))
    if cost_texts is not None:
        cost = evaluation.score_steering_cost(
            lm, cost_texts, vectors=vectors or None, alphas=alphas, site=site, positions=args.positions,
            normalize=None if args.normalize == "none" else args.normalize, batch_size=batch_size,
            task=f"cost:{args.cost_texts.stem}", progress=True)
        cost.to_json(out.path("cost.json"))
        cost.to_csv(out.path("cost.csv"))
        if args.task in ("ab", "persona"):
            evaluation.plot_effect_vs_cost(table, cost, out.path("cost_vs_effect.png"), effect_metric=args.metric)
        print("cost of steering (mean over texts):")
        print("\n".join(line for line in summary_lines(cost) if not line.startswith("nll ")))
    out.finish()
    extras = (" and comparison.*" if args.native else "") + (
        (" and cost.*" + (", cost_vs_effect.png" if args.task in ("ab", "persona") else ""))
        if cost_texts is not None else "")
    print(f"wrote scores.json, scores.csv, scores.png{extras} to {args.out}")
    return 0
