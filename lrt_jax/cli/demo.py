"""``lrt-jax demo``: the LRT experiment on the built-in model organisms, end to end.

Trains (or loads from the cache) a small llama-style organism and larger dense and
MoE ones, fits ridge maps between every pair of their layers, builds a steering vector per latent
attribute in the small model, transfers it to the larger models, sweeps α and
writes ``results.json``, ``scores.json``, ``comparison.json``, ``report.md`` and plots
(among them the R² heatmap of all layer pairs) into ``--out``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from lrt_jax.cli._common import add_output_argument
from lrt_jax.outputs import prepare_output_dir

ATTRIBUTES = ("sentiment", "topic", "tense", "formality")


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the LRT experiment on the built-in model organisms")
    add_output_argument(parser, "out/demo")
    parser.add_argument("--targets", default="large,moe", help="target organisms (default large,moe; also gemma2)")
    parser.add_argument("--attributes", default=",".join(ATTRIBUTES))
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="organism cache (default $LRT_JAX_CACHE or ~/.cache/lrt_jax/organisms)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny organisms and fewer prompts: a smoke run in about a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def enable_compilation_cache(cache_dir) -> None:
    """Keep compiled XLA programs on disk beside the organisms, so a warm demo skips most compilation."""
    import jax

    from lrt_jax.organisms import organism_cache_root

    # An explicit --cache-dir holds everything the demo caches; the default root sits beside it.
    root = organism_cache_root(cache_dir)
    jax.config.update("jax_compilation_cache_dir", str(root / "xla_cache" if cache_dir else root.parent / "xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def run(args) -> int:
    from lrt_jax.lrt import run_lrt_experiment, write_report
    from lrt_jax.lrt.demo import demo_config, held_out_texts
    from lrt_jax.organisms import organism

    started = time.perf_counter()
    if args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        raise NotADirectoryError(f"--cache-dir {args.cache_dir} is a file; give a directory for the organism cache.")
    prefix = "tiny-" if args.quick else ""
    names = [name.strip() for name in args.targets.split(",") if name.strip()]
    attributes = [a.strip() for a in args.attributes.split(",") if a.strip()]
    unknown = sorted(set(attributes) - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; the organisms have {', '.join(ATTRIBUTES)}.")
    report_files = ("results.json", "scores.json", "comparison.json", "report.md", "r2_layer_pairs.png",
                    *(f"steering_{a}.png" for a in ATTRIBUTES))
    out = prepare_output_dir(args.out, "demo", report_files, overwrite=args.overwrite)
    enable_compilation_cache(args.cache_dir)
    source = organism(prefix + "small", cache_dir=args.cache_dir)
    targets = {name: organism(prefix + name, cache_dir=args.cache_dir) for name in names}
    config = demo_config(source, targets, attributes, args.quick, args.seed)
    results = run_lrt_experiment(source, targets, held_out_texts(config.n_fit_texts, args.seed), config)
    results = dataclasses.replace(results, wall_seconds=time.perf_counter() - started)
    table = write_report(results, out.root)
    out.finish()
    print(table)
    print(f"\nreport: {args.out / 'report.md'} ({results.wall_seconds:.0f} s)")
    return 0
