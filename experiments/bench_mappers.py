"""Benchmark the closed-form mappers against scikit-learn, NumPy/SciPy, torch and the roofline.

What is timed (float32, centred data, one fit of a d_s → d_t map from n rows):

* ours: ``ridge(1.0)``, ``ridge(alphas=10 values, select="gcv")``, ``lstsq()``,
  ``procrustes()``, ``reduced_rank(64, 1.0)``, ``gradient`` (affine, Adam,
  50 steps of 1024 rows — time only: a different algorithm);
* peers: sklearn ``Ridge`` (cholesky), sklearn ``RidgeCV`` (same 10 α; exact
  LOO via an SVD of X), NumPy Gram + ``scipy.linalg.solve(assume_a="pos")``,
  torch CPU ``linalg.lstsq`` (gelsy) and torch Cholesky ridge.

Roofline. ``flops = 2·n·d_s·(d_s + d_t)`` (XᵀX and XᵀY as one general GEMM)
``+ d_s³/3`` (Cholesky) ``+ 2·d_s²·d_t`` (the two triangular solves), and
``roofline time = flops / GEMM throughput``, the throughput measured in this
run on the bare ``Xᵀ[X, Y]`` GEMM of the same shape (operands already
concatenated; ``jnp.matmul``, precision HIGHEST). Our statistics skip the
blocks of XᵀX below the diagonal (256-wide panels; so do NumPy's ``X.T @ X``
(syrk) and hence sklearn), so the issue allows counting only ``n·d_s²`` for
XᵀX. The targets use the full count above; the stricter ratio against the
symmetric count (``x_roofline_symmetric`` in the JSON, "×sym" in the table)
is reported next to it. The peak of a square 4096³ GEMM is reported too.

Feasibility. The same ``Xᵀ[X, Y]`` GEMM is also timed in NumPy (OpenBLAS) and
torch. The least work of any exact ridge, ``n·d_s² + 2·n·d_s·d_t`` flops,
divided by the fastest of the three throughputs bounds every exact solver
from below; the run reports the GFLOP/s that "2× faster than sklearn Ridge"
would need, and whether this machine's fastest GEMM reaches it.

Timing. Every method (ours, peers and the roofline GEMM alike) gets one
warm-up call (so JAX compile time is excluded), then the best of at least
``--repeats`` calls, and fast ones are repeated until 2 s are spent (≤ 50
calls); sklearn ``RidgeCV`` and torch ``lstsq`` (tens of seconds) run once.
A 0.5 s pause before each method lets the BLAS threads of the previous one go
idle. The single-α ridge and the roofline GEMM are then timed once more
*alternately* (ridge, GEMM, ridge, …; ≥ 5 pairs and ≥ 4 s), so that both
see the same phases of this shared VM's speed drift; that ratio is reported
beside the separately timed one.

Usage::

    python experiments/bench_mappers.py                 # the three issue shapes
    python experiments/bench_mappers.py --quick         # fewer repeats, skip slow peers
    python experiments/bench_mappers.py --shapes 20000x256x512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg

from lrt_jax import mappers

SHAPES = ((20000, 256, 512), (100000, 512, 1024), (50000, 1024, 2048))
ALPHAS = np.logspace(-2, 4, 10)
RESULTS = Path(__file__).parent / "results"
_HIGHEST = jax.lax.Precision.HIGHEST
_SETTLE_S = 0.5
_MIN_SECONDS = 2.0


def best_time(run, repeats: int, warmup: bool = True, min_seconds: float = 0.0) -> float:
    """Best wall time of ``run()`` over at least ``repeats`` calls (after one warm-up).

    Fast methods are called until ``min_seconds`` have been spent (at most 50
    calls): on a shared 2-core VM single calls of ~0.1 s vary by ±20%, and the
    minimum of many calls is what the hardware can do. Each method starts
    after a short pause, so that BLAS/OpenMP worker threads left spinning by
    the previous method (OpenBLAS, torch) have gone to sleep and do not slow
    the next one down: every method gets a quiet machine.
    """
    time.sleep(_SETTLE_S)
    if warmup:
        jax.block_until_ready(run())
    times = []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < 50):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return min(times)


def problem_flops(n: int, d_s: int, d_t: int, symmetric: bool = False) -> float:
    gram = n * d_s ** 2 if symmetric else 2.0 * n * d_s ** 2
    return gram + 2.0 * n * d_s * d_t + d_s ** 3 / 3 + 2.0 * d_s ** 2 * d_t


def paired_best_times(run_a, run_b, min_pairs: int = 5, min_seconds: float = 4.0,
                      settle: float = 0.1) -> tuple[float, float]:
    """Best times of two calls measured alternately (a, b, a, b, …) after a warm-up each.

    For a ratio of two timings on a shared VM: the machine's speed drifts by
    ±20% over seconds, so two methods timed one after the other can land in
    different phases. Alternating them exposes both to the same phases; each
    call starts after a short pause so neither inherits the other's spinning
    worker threads.
    """
    time.sleep(_SETTLE_S)
    jax.block_until_ready(run_a())
    jax.block_until_ready(run_b())
    times_a, times_b = [], []
    while len(times_a) < min_pairs or (sum(times_a) + sum(times_b) < min_seconds
                                       and len(times_a) < 50):
        for run, times in ((run_a, times_a), (run_b, times_b)):
            time.sleep(settle)
            start = time.perf_counter()
            jax.block_until_ready(run())
            times.append(time.perf_counter() - start)
    return min(times_a), min(times_b)


def gemm_flops(n: int, d_s: int, d_t: int) -> float:
    """Flops of the ``Xᵀ[X, Y]`` GEMM, ``[n, d_s]ᵀ @ [n, d_s + d_t]``."""
    return 2.0 * n * d_s * (d_s + d_t)


def roofline_gemm(x, y):
    """The bare GEMM Xᵀ[X, Y] (operands ready, jitted): the ceiling of any Gram solver."""
    xy = jnp.concatenate([x, y], 1)
    gemm = jax.jit(lambda x, xy: jnp.matmul(x.T, xy, precision=_HIGHEST))
    return lambda: gemm(x, xy)


def gemm_throughput(gemm, flops: float, repeats: int) -> float:
    """GFLOP/s of ``gemm()`` (a :func:`roofline_gemm`) doing ``flops``."""
    return flops / best_time(gemm, repeats, min_seconds=_MIN_SECONDS) / 1e9


def library_gemm_throughputs(x_np, y_np, repeats: int) -> dict:
    """GFLOP/s of the same ``Xᵀ[X, Y]`` GEMM in NumPy (OpenBLAS) and torch (CPU).

    The fastest GEMM any library reaches here bounds how fast *any* exact
    float32 ridge can be on this machine (see :func:`feasibility`).
    """
    import torch

    xy_np = np.concatenate([x_np, y_np], 1)
    x_t, xy_t = torch.from_numpy(x_np), torch.from_numpy(xy_np)
    flops = gemm_flops(*x_np.shape, y_np.shape[1])
    return {
        "numpy (OpenBLAS)": flops / best_time(lambda: x_np.T @ xy_np, repeats,
                                              min_seconds=_MIN_SECONDS) / 1e9,
        "torch": flops / best_time(lambda: x_t.T @ xy_t, repeats,
                                   min_seconds=_MIN_SECONDS) / 1e9,
    }


def feasibility(result) -> dict:
    """Whether "2× faster than sklearn Ridge" is physically reachable on this machine.

    Any exact ridge must at least form the upper triangle of XᵀX and all of
    XᵀY: ``n·d_s² + 2·n·d_s·d_t`` flops (the symmetric count, no Cholesky, no
    centring pass). Divided by the fastest GEMM throughput measured in this
    run by any library (XLA, alone or alternated with ridge; OpenBLAS; torch),
    this is a lower bound on the time of every exact solver; the target needs
    ``sklearn / 2`` to be above it.
    """
    n, d_s, d_t = result["shape"]
    least_flops = n * d_s ** 2 + 2.0 * n * d_s * d_t
    fastest = max(result["gemm_gflops"], result["paired_ridge_vs_roofline"]["gemm_gflops"],
                  *result["library_gemm_gflops"].values())
    half_sklearn = result["methods"]["sklearn Ridge"]["seconds"] / 2
    return {"least_flops": least_flops, "fastest_gemm_gflops": fastest,
            "lower_bound_s": least_flops / (fastest * 1e9),
            "half_sklearn_s": half_sklearn,
            "gflops_needed_for_2x_sklearn": least_flops / half_sklearn / 1e9,
            "2x_sklearn_reachable": half_sklearn >= least_flops / (fastest * 1e9)}


def square_gemm_peak(repeats: int) -> float:
    a = jnp.ones((4096, 4096), jnp.float32)
    square = jax.jit(lambda a: jnp.matmul(a, a, precision=_HIGHEST))
    return 2.0 * 4096 ** 3 / best_time(lambda: square(a), repeats) / 1e9


def our_methods(x, y):
    rank = min(64, *x.shape[1:], *y.shape[1:])
    adam = mappers.gradient("affine", "mse", optax.adam(1e-3), steps=50, batch_size=1024)
    return {
        "ours ridge (1 α)": lambda: mappers.ridge(1.0).fit(x, y),
        "ours ridge (10 α, GCV)": lambda: mappers.ridge(alphas=ALPHAS, select="gcv").fit(x, y),
        "ours lstsq": lambda: mappers.lstsq().fit(x, y),
        "ours procrustes": lambda: mappers.procrustes().fit(x, y),
        "ours reduced_rank (r=64)": lambda: mappers.reduced_rank(rank, 1.0).fit(x, y),
        "ours gradient (50 Adam steps)": lambda: adam.fit(x, y),
    }


def peer_methods(x_np, y_np, quick: bool, large: bool):
    import torch
    from sklearn.linear_model import Ridge, RidgeCV

    torch.set_num_threads(os.cpu_count())
    x_t, y_t = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def numpy_scipy_ridge():
        xc, yc = x_np - x_np.mean(0), y_np - y_np.mean(0)
        gram = xc.T @ xc
        gram[np.diag_indices_from(gram)] += 1.0
        return scipy.linalg.solve(gram, xc.T @ yc, assume_a="pos")

    def torch_lstsq():
        return torch.linalg.lstsq(x_t - x_t.mean(0), y_t - y_t.mean(0)).solution

    def torch_cholesky_ridge():
        xc, yc = x_t - x_t.mean(0), y_t - y_t.mean(0)
        gram = xc.T @ xc + torch.eye(xc.shape[1])
        return torch.cholesky_solve(xc.T @ yc, torch.linalg.cholesky(gram))

    methods = {
        "sklearn Ridge": lambda: Ridge(alpha=1.0).fit(x_np, y_np),
        "sklearn RidgeCV (10 α)": lambda: RidgeCV(alphas=ALPHAS).fit(x_np, y_np),
        "numpy+scipy solve": numpy_scipy_ridge,
        "torch lstsq": torch_lstsq,
        "torch Cholesky ridge": torch_cholesky_ridge,
    }
    if quick and large:
        del methods["sklearn RidgeCV (10 α)"], methods["torch lstsq"]
    return methods


def bench_shape(n, d_s, d_t, repeats, quick):
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((n, d_s), dtype=np.float32)
    x_np += rng.standard_normal(d_s, dtype=np.float32)
    y_np = (x_np @ rng.standard_normal((d_s, d_t), dtype=np.float32) / np.sqrt(d_s)
            + rng.standard_normal((n, d_t), dtype=np.float32)).astype(np.float32)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    flops = problem_flops(n, d_s, d_t)
    bare_gemm, bare_flops = roofline_gemm(x, y), gemm_flops(n, d_s, d_t)
    gemm = gemm_throughput(bare_gemm, bare_flops, repeats)
    roofline = flops / (gemm * 1e9)
    roofline_symmetric = problem_flops(n, d_s, d_t, symmetric=True) / (gemm * 1e9)
    rows = {}
    ours = our_methods(x, y)
    for name, run in ours.items():
        rows[name] = best_time(run, repeats, min_seconds=_MIN_SECONDS)
        print(f"  {name:32s} {rows[name]:8.3f} s", flush=True)
    # The target ratio once more, ridge and roofline GEMM timed alternately.
    ridge_s, gemm_s = paired_best_times(ours["ours ridge (1 α)"], bare_gemm)
    paired = {"ridge_s": ridge_s, "gemm_s": gemm_s, "gemm_gflops": bare_flops / gemm_s / 1e9}
    paired["x_roofline"] = ridge_s / (flops / (paired["gemm_gflops"] * 1e9))
    print(f"  paired: ridge {ridge_s:.3f} s, GEMM {gemm_s:.3f} s →"
          f" {paired['x_roofline']:.2f}× roofline", flush=True)
    peer_repeats = 1 if quick else max(1, repeats - 1)
    for name, run in peer_methods(x_np, y_np, quick, d_s >= 1024).items():
        slow = "RidgeCV" in name or "lstsq" in name
        rows[name] = (best_time(run, 1, warmup=False) if slow else
                      best_time(run, peer_repeats, min_seconds=_MIN_SECONDS))
        print(f"  {name:32s} {rows[name]:8.3f} s", flush=True)
    library_gemm = library_gemm_throughputs(x_np, y_np, repeats)
    print("  GEMM Xᵀ[X, Y] GFLOP/s: " + ", ".join(
        f"{name} {value:.1f}" for name, value in {"XLA": gemm, **library_gemm}.items()))
    return {
        "shape": [n, d_s, d_t], "flops": flops, "gemm_gflops": gemm,
        "library_gemm_gflops": library_gemm, "paired_ridge_vs_roofline": paired,
        "roofline_s": roofline, "roofline_symmetric_s": roofline_symmetric,
        "methods": {name: {"seconds": seconds, "gflops": flops / seconds / 1e9,
                           "x_roofline": seconds / roofline,
                           "x_roofline_symmetric": seconds / roofline_symmetric}
                    for name, seconds in rows.items()},
    }


def targets(result):
    m = {name: row["seconds"] for name, row in result["methods"].items()}
    single, grid = m["ours ridge (1 α)"], m["ours ridge (10 α, GCV)"]
    checks = {
        "ridge ≤ 1.3× roofline": single / result["roofline_s"] <= 1.3,
        "ridge ≤ 1.3× roofline (timed alternately)":
            result["paired_ridge_vs_roofline"]["x_roofline"] <= 1.3,
        "ridge ≥ 2× faster than sklearn Ridge": m["sklearn Ridge"] / single >= 2.0,
        "GCV ≤ 1.5× single-α": grid / single <= 1.5,
    }
    if "sklearn RidgeCV (10 α)" in m:
        checks["GCV faster than sklearn RidgeCV"] = grid < m["sklearn RidgeCV (10 α)"]
    return checks


def print_table(results):
    print(f"\n{'method':34s}" + "".join(f"{'x'.join(map(str, r['shape'])):>30s}" for r in results))
    print(f"{'':34s}" + "".join(f"{'s    GFLOP/s  ×roof':>30s}" for _ in results))
    names = list(results[0]["methods"])
    for name in names:
        cells = []
        for r in results:
            row = r["methods"].get(name)
            cells.append(f"{row['seconds']:10.3f} {row['gflops']:8.1f} {row['x_roofline']:8.2f}"
                         if row else f"{'—':>28s}")
        print(f"{name:34s}" + "".join(f"{c:>30s}" for c in cells))
    print(f"{'roofline (GEMM GFLOP/s)':34s}" + "".join(
        f"{r['roofline_s']:10.3f} {r['gemm_gflops']:8.1f} {1.0:8.2f}".rjust(30) for r in results))
    print(f"{'ours ridge (1 α) ×roof, alternated':34s}" + "".join(
        f"{r['paired_ridge_vs_roofline']['x_roofline']:8.2f}".rjust(30) for r in results))
    print(f"{'ours ridge (1 α) ×sym roofline':34s}" + "".join(
        f"{r['methods']['ours ridge (1 α)']['x_roofline_symmetric']:8.2f}".rjust(30) for r in results))
    for r in results:
        print("x".join(map(str, r["shape"])), {k: ("met" if v else "NOT met") for k, v in r["targets"].items()})
    print("\n2× faster than sklearn Ridge needs, for the least flops of any exact ridge"
          " (n·d_s² + 2·n·d_s·d_t):")
    for r in results:
        f = r["feasibility"]
        print(f"  {'x'.join(map(str, r['shape'])):>18s}: {f['gflops_needed_for_2x_sklearn']:6.1f}"
              f" GFLOP/s; fastest GEMM measured here {f['fastest_gemm_gflops']:6.1f} GFLOP/s"
              f" ({'reachable' if f['2x_sklearn_reachable'] else 'NOT reachable on this machine'})")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 5), squeeze=False)
    for axis, r in zip(axes[0], results):
        names = list(r["methods"])
        seconds = [r["methods"][name]["seconds"] for name in names]
        colours = ["tab:blue" if name.startswith("ours") else "tab:gray" for name in names]
        axis.barh(names, seconds, color=colours)
        axis.axvline(r["roofline_s"], color="tab:red", linestyle="--", label="roofline")
        if "feasibility" in r:
            axis.axvline(r["feasibility"]["lower_bound_s"], color="black", linestyle=":",
                         label="least flops at fastest GEMM (any exact solver)")
            axis.axvline(r["feasibility"]["half_sklearn_s"], color="tab:green",
                         linestyle="-.", label="target: half of sklearn Ridge")
        axis.set_xscale("log")
        axis.set_xlabel("seconds (log)")
        axis.set_title("n, d_s, d_t = " + ", ".join(map(str, r["shape"])))
        axis.invert_yaxis()
        axis.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES),
                        help="comma-separated NxDSxDT shapes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat for peers; skip RidgeCV and torch lstsq when d_s ≥ 1024")
    parser.add_argument("--out", default=str(RESULTS / "bench_mappers"))
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    peak = square_gemm_peak(args.repeats)
    print(f"devices: {jax.devices()}  cpus: {os.cpu_count()}  square GEMM peak: {peak:.1f} GFLOP/s")
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "device": str(jax.devices()[0]), "jax": jax.__version__,
               "square_gemm_gflops": peak}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    results = []
    for n, d_s, d_t in shapes:
        print(f"shape n={n} d_s={d_s} d_t={d_t}", flush=True)
        result = bench_shape(n, d_s, d_t, args.repeats, args.quick)
        result["targets"] = targets(result)
        result["feasibility"] = feasibility(result)
        result["load_average"] = os.getloadavg()
        results.append(result)
        # Written after every shape, so a long run that is stopped keeps its results.
        record = {"machine": machine, "dtype": "float32", "alphas": ALPHAS.tolist(),
                  "repeats": args.repeats, "quick": args.quick,
                  "flops_note": "x_roofline: 2·n·d_s·(d_s+d_t) + d_s³/3 + 2·d_s²·d_t (full"
                  " 2·n·d_s² for XᵀX); x_roofline_symmetric: n·d_s² for XᵀX (our"
                  " statistics compute its upper block-triangle only)", "results": results}
        Path(args.out + ".json").write_text(json.dumps(record, indent=2))
    print_table(results)
    plot(results, args.out + ".png")
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
