"""Will the published checkpoints fit a v5e-8? ``lrt-jax plan`` before and after the pod-scale work.

Every case is compiled without weights for a deviceless TPU v5e:2x4 (``libtpu``, no
TPU), mesh ``fsdp=8``, bf16, and reports per-chip memory (against 16 GiB of HBM;
15.75 usable), compiled flops over the ideal ``2 · active params · tokens``,
collective bytes per chip per forward, and compile time:

* ``before``: the pre-#15 program: dense MoE (every expert on every token),
  the materialised ``[b, kv, g, q, s]`` attention, unrolled layers, no activation
  constraints (``pin_activations=False``);
* ``after``: the defaults (``execution`` ``auto``: sparse MoE in ``shard_map``,
  splash attention, constrained activations), unrolled, because XLA's cost analysis
  counts a loop body once; the ``scanned`` cases put the layers under ``lax.scan``
  for the compile-time ratio.

Cases: capture of every ``resid_post`` at 8 × 4096 for Gemma-2-2B/9B, Llama-3.1-8B,
Mistral-7B, Mixtral-8x7B, OLMoE-1B-7B and Qwen1.5-MoE-A2.7B; Gemma-2-9B ``forward``
(logits) at 8 × 4096; Gemma-2-9B and Llama-3.1-8B capture at 16 × 8192; Gemma-2-9B
capture scanned at 4 and 42 layers for the compile-time ratio. Each case runs in its own
process (compiles of unrolled 42-layer programs take minutes and gigabytes); results
merge into ``experiments/results/bench_plan.json`` so ``--variant after`` can be
rerun alone.

    python experiments/bench_plan.py                 # both variants, every case
    python experiments/bench_plan.py --variant after --cases gemma-2-9b
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "bench_plan.json"
GIB = 2**30
USABLE_HBM = 15.75 * GIB

MODELS = ("gemma-2-2b", "gemma-2-9b", "llama-3.1-8b", "mistral-7b", "mixtral-8x7b", "olmoe-1b-7b",
          "qwen1.5-moe-a2.7b")
# name -> (model, job, batch, seq, layers or None)
CASES = {
    **{f"{m} capture 8x4096": (m, "capture", 8, 4096, None) for m in MODELS},
    "gemma-2-9b forward 8x4096": ("gemma-2-9b", "forward", 8, 4096, None),
    "gemma-2-9b capture 16x8192": ("gemma-2-9b", "capture", 16, 8192, None),
    "llama-3.1-8b capture 16x8192": ("llama-3.1-8b", "capture", 16, 8192, None),
    "gemma-2-9b capture 8x4096 scanned": ("gemma-2-9b", "capture", 8, 4096, None),
    "gemma-2-9b capture 8x4096 scanned 4 layers": ("gemma-2-9b", "capture", 8, 4096, 4),
}
BEFORE = {"moe": "dense", "attention": "materialized", "scan_layers": False}


def after_settings(case: str) -> dict:
    # XLA's cost analysis counts a loop body once, so flops are measured unrolled; the
    # "scanned" cases measure compile time (and memory) with the layers under lax.scan.
    return {"scan_layers": "scanned" in case}


def measure(case: str, variant: str) -> dict:
    """Runs in a child process: one compile."""
    from lrt_jax.parallel import plan
    from lrt_jax.parallel.published import published_config

    model, job, batch, seq, layers = CASES[case]
    config = published_config(model)
    if layers is not None:  # Gemma-2 lists a type per layer: keep the first `layers` of them
        config = config.replace(n_layers=layers, layer_types=config.layer_types[:layers] or None)
    settings = dict(BEFORE) if variant == "before" else after_settings(case)
    result = plan(config, topology="v5e:2x4", mesh="fsdp=8", batch=batch, seq=seq, job=job, dtype="bfloat16",
                  execution=settings, pin_activations=variant != "before")
    weights = 2 * result.params_total / 8  # bf16 bytes per chip under fsdp=8
    return {"case": case, "variant": variant, "model": model, "job": job, "batch": batch, "seq": seq,
            "layers": config.n_layers, "fits": result.per_device_bytes["total"] <= USABLE_HBM,
            "per_device_bytes": result.per_device_bytes, "flops_ratio": result.flops_ratio,
            "collective_bytes": result.collective_bytes,
            "collective_over_weights": sum(result.collective_bytes.values()) / (2 * result.params_total),
            "weight_bytes_per_chip": weights, "compile_s": result.compile_s, "execution": result.execution}


def run_child(case: str, variant: str, timeout: int) -> dict:
    command = [sys.executable, __file__, "--child", case, "--variant", variant]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "variant": variant, "error": f"compile exceeded {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"case": case, "variant": variant, "error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(lines[-1])


def table(rows: list[dict]) -> str:
    head = "| case | variant | per-chip GiB | fits 15.75 | flops / ideal | collectives GiB / chip | ÷ bf16 weights | compile s |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['variant']} | error: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['case']} | {r['variant']} | {r['per_device_bytes']['total'] / GIB:.2f} | "
                     f"{'yes' if r['fits'] else 'no'} | {r['flops_ratio']:.3f} | "
                     f"{sum(r['collective_bytes'].values()) / GIB:.1f} | {r['collective_over_weights']:.2f} | "
                     f"{r['compile_s']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = list(dict.fromkeys(r["case"] for r in rows if "error" not in r))
    fig, axes = plt.subplots(1, 3, figsize=(17, 0.45 * len(cases) + 2), sharey=True)
    y = np.arange(len(cases))
    for offset, variant, color in ((-0.2, "before", "#bbbbbb"), (0.2, "after", "#1f77b4")):
        got = {r["case"]: r for r in rows if r["variant"] == variant and "error" not in r}
        for ax, value in zip(axes, (lambda r: r["per_device_bytes"]["total"] / GIB, lambda r: r["flops_ratio"],
                                    lambda r: r["collective_over_weights"])):
            ax.barh(y + offset, [value(got[c]) if c in got else 0 for c in cases], height=0.4, color=color,
                    label=variant)
    axes[0].axvline(15.75, color="red", lw=1, label="v5e usable HBM")
    axes[0].set_xlabel("per-chip GiB (v5e:2x4, fsdp=8)")
    axes[1].axvline(1.15, color="red", lw=1)
    axes[1].set_xlabel("compiled flops / 2·active params·tokens")
    axes[2].axvline(1.5, color="red", lw=1)
    axes[2].set_xlabel("collective bytes per chip / bf16 weight bytes")
    for ax in axes:
        ax.set_xscale("log")
    axes[0].set_yticks(y, cases)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right")
    fig.suptitle("lrt-jax plan, deviceless TPU v5e:2x4: before and after #15")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("before", "after", "both"), default="both")
    parser.add_argument("--cases", default="", help="comma-separated substrings of case names (default: all)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per compile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.variant)))
        return
    wanted = [c for c in CASES if not args.cases or any(s in c for s in args.cases.split(","))]
    variants = ("before", "after") if args.variant == "both" else (args.variant,)
    previous = json.loads(RESULTS.read_text())["rows"] if RESULTS.exists() else []
    rows = {(r["case"], r["variant"]): r for r in previous}
    from tqdm import tqdm

    for case, variant in tqdm([(c, v) for c in wanted for v in variants], desc="compiling"):
        rows[case, variant] = run_child(case, variant, args.timeout)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        ordered = [rows[c, v] for c in CASES for v in ("before", "after") if (c, v) in rows]
        RESULTS.write_text(json.dumps({"topology": "v5e:2x4", "mesh": "fsdp=8", "dtype": "bfloat16",
                                       "rows": ordered}, indent=2))
    ordered = [rows[c, v] for c in CASES for v in ("before", "after") if (c, v) in rows]
    print(table(ordered))
    plot(ordered, RESULTS.with_suffix(".png"))
    compile_rows = {r["layers"]: r["compile_s"] for r in ordered
                    if "scanned" in r["case"] and r.get("variant") == "after" and "error" not in r}
    if 4 in compile_rows and 42 in compile_rows:
        print(f"compile time 42 layers / 4 layers (after): {compile_rows[42] / compile_rows[4]:.2f}")
    print(f"wrote {RESULTS} and {RESULTS.with_suffix('.png')}")


if __name__ == "__main__":
    main()
