"""``lrt-jax bench``: benchmark mapper solvers between two models by what they preserve.

Captures token-paired activations of a source and a target model once, fits a grid of
solvers (ridge by GCV / LOO / k-fold, lstsq, procrustes, reduced rank, CCA, gradient
affine and MLP, chains with center / standardize / pca / whiten) on every chosen layer
pair, and scores them on held-out rows — R², cosine, CKA, mutual k-NN, steering
preservation, substitution KL, fit seconds — with bootstrap intervals; it also compares
layer-pairing rules over all pairs (:mod:`lrt_jax.lrt.bench`). ``--out`` gets
``leaderboard.json`` / ``.csv`` / ``.md``, ``bench.json``, plots and, with
``--save-activations``, ``activations.safetensors`` (keys ``"source/{site}/train"``,
``"source/{site}/test"``, ``"target/{site}/…"``; :mod:`lrt_jax.lrt.bench_report`).

Models are organism names (``small``, ``large``, ``moe``, ``gemma2``, … — trained on
first use and cached) or checkpoint directories that share the source's tokenizer. The
steering scores use the organisms' attribute probes; pass ``--attributes none`` for
models that do not speak the organism corpus.
"""

from __future__ import annotations

import time
from pathlib import Path

from lrt_jax.cli._common import add_output_argument, read_prompts
from lrt_jax.outputs import prepare_output_dir

ATTRIBUTES = ("sentiment", "topic", "tense", "formality")


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmark mapper solvers (geometry, steering, substitution)")
    parser.add_argument("--source", default="small", help="organism name or checkpoint directory (default small)")
    parser.add_argument("--target", default="large", help="organism name or checkpoint directory (default large)")
    parser.add_argument("--texts", type=Path, default=None,
                        help="text file, one text per line (default: held-out organism corpus documents)")
    parser.add_argument("--n-texts", type=int, default=200, help="organism documents when --texts is not given")
    parser.add_argument("--layer-pairs", default="all",
                        help="'all' (default) or source:target pairs, e.g. '1:2,2:3'")
    parser.add_argument("--attributes", default=",".join(ATTRIBUTES),
                        help="organism attributes for steering preservation, or 'none'")
    parser.add_argument("--n-bootstrap", type=int, default=200, help="bootstrap resamples per interval")
    parser.add_argument("--max-test-rows", type=int, default=512, help="held-out tokens scored")
    parser.add_argument("--save-activations", action="store_true",
                        help="also write the exact rows used as activations.safetensors")
    parser.add_argument("--quick", action="store_true",
                        help="tiny organisms (tiny-<name>) and smaller numbers: a smoke run")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="organism cache (default $LRT_JAX_CACHE or ~/.cache/lrt_jax/organisms)")
    parser.add_argument("--seed", type=int, default=0)
    add_output_argument(parser, "out/bench")
    parser.set_defaults(func=run)


def parse_layer_pairs(text: str) -> tuple[tuple[int, int], ...] | None:
    """``"all"`` → ``None``; ``"1:2,2:3"`` → ``((1, 2), (2, 3))``."""
    if text.strip() == "all":
        return None
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            source, target = part.split(":")
            pairs.append((int(source), int(target)))
        except ValueError:
            raise ValueError(f"--layer-pairs {text!r}: write 'all' or source:target pairs such as '1:2,2:3' "
                             f"({part!r} is not one).") from None
    if not pairs:
        raise ValueError(f"--layer-pairs {text!r} names no pair; write 'all' or e.g. '1:2,2:3'.")
    return tuple(pairs)


def parse_attributes(text: str) -> tuple[str, ...]:
    if text.strip() == "none":
        return ()
    attributes = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = sorted(set(attributes) - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; the organisms have {', '.join(ATTRIBUTES)} (or 'none').")
    return attributes


def resolve_model(value: str, cache_dir, quick: bool):
    """A checkpoint directory, else a built-in organism (``tiny-`` prefixed with ``--quick``)."""
    from lrt_jax import loading
    from lrt_jax.organisms import get_recipe, organism

    if Path(value).is_dir():
        return loading.load(value)
    name = f"tiny-{value}" if quick and not value.startswith("tiny-") else value
    try:
        get_recipe(name)
    except KeyError as error:
        raise ValueError(f"{value!r} is neither a checkpoint directory nor an organism: {error.args[0]}") from None
    return organism(name, cache_dir=cache_dir)


def run(args) -> int:
    from lrt_jax.lrt import BenchConfig, run_bench, save_bench_activations, write_bench_report
    from lrt_jax.lrt.bench_report import ACTIVATIONS_FILE, REPORT_FILES
    from lrt_jax.lrt.demo import held_out_texts

    started = time.perf_counter()
    layer_pairs, attributes = parse_layer_pairs(args.layer_pairs), parse_attributes(args.attributes)
    for flag, value in (("--n-texts", args.n_texts), ("--n-bootstrap", args.n_bootstrap),
                        ("--max-test-rows", args.max_test_rows)):
        if value < 1:
            raise ValueError(f"{flag} {value}: give a positive number.")
    files = (*REPORT_FILES, ACTIVATIONS_FILE) if args.save_activations else REPORT_FILES
    out = prepare_output_dir(args.out, "bench", files, overwrite=args.overwrite)
    texts = read_prompts(args.texts) if args.texts is not None else None
    # No persistent compilation cache here (unlike demo): with it, the compiled vmapped ridge fit
    # hung in block_until_ready (jax 0.10.2, CPU).
    source = resolve_model(args.source, args.cache_dir, args.quick)
    target = resolve_model(args.target, args.cache_dir, args.quick)
    if args.quick:
        config = BenchConfig(layer_pairs=layer_pairs, attributes=attributes, max_test_rows=min(args.max_test_rows, 128),
                             n_substitution_texts=8, n_pairs=12, n_probe_prompts=12, gradient_steps=100,
                             n_bootstrap=min(args.n_bootstrap, 100), seed=args.seed)
    else:
        config = BenchConfig(layer_pairs=layer_pairs, attributes=attributes, max_test_rows=args.max_test_rows,
                             n_bootstrap=args.n_bootstrap, seed=args.seed)
    if texts is None:
        texts = held_out_texts(min(args.n_texts, 60) if args.quick else args.n_texts, args.seed)
    result = run_bench(source, target, texts, config)
    written = list(REPORT_FILES)
    if args.save_activations:
        save_bench_activations(result, out.path(ACTIVATIONS_FILE))
        written.append(ACTIVATIONS_FILE)
    markdown = write_bench_report(result, out.root)
    out.finish(written)
    print(markdown.split("\n## Layer choice")[0])
    print(f"leaderboard: {args.out / 'leaderboard.md'} ({time.perf_counter() - started:.0f} s)")
    return 0
