"""Dense vs sparse MoE dispatch on this machine: where ``moe="auto"`` should switch.

One MoE layer (``lrt_jax.model.mlp.MoE``) jitted both ways on ``batch × seq`` tokens,
for expert sizes from the organisms' up; prints the sparse/dense time ratio (below 1:
sparse is faster) next to the expert parameter count, the measurement that
``moe="auto"`` rests on (dense on CPUs), and writes JSON + a plot.

    python experiments/bench_moe.py
"""

from __future__ import annotations

import argparse
import dataclasses

import jax

import lrt_jax
from _bench_utils import RESULTS_DIR, time_call, write_results
from lrt_jax.model.mlp import MoE

SIZES = [(64, 32, 4, 2), (128, 64, 8, 2), (256, 128, 8, 2), (512, 256, 8, 2), (512, 512, 16, 2), (1024, 512, 32, 4)]


def measure(d, f, e, k, tokens, repeats):
    config = lrt_jax.ModelConfig("mixtral", 256, d, 1, 4, 4, d // 4, 4 * d, n_experts=e, top_k=k, moe_d_ff=f)
    x = jax.random.normal(jax.random.key(0), (tokens // 128, 128, d))
    times = {}
    for dispatch in ("dense", "sparse"):
        c = config.replace(execution=dataclasses.replace(config.execution, moe=dispatch))
        module = MoE(c, 0)
        params = module.init(jax.random.key(1), x[:1, :1])
        fn = jax.jit(lambda p, x: module.apply(p, x))
        times[dispatch] = time_call(lambda: jax.block_until_ready(fn(params, x)), repeats=repeats)
    return {"d_model": d, "moe_d_ff": f, "n_experts": e, "top_k": k, "expert_params": 3 * e * d * f,
            "dense_s": times["dense"], "sparse_s": times["sparse"], "sparse_over_dense": times["sparse"] / times["dense"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = [measure(*size, args.tokens, args.repeats) for size in SIZES]
    for r in rows:
        print(f"d={r['d_model']:5d} f={r['moe_d_ff']:4d} E={r['n_experts']:3d} k={r['top_k']} "
              f"expert params {r['expert_params']:>10,d}  dense {r['dense_s'] * 1e3:8.2f} ms  "
              f"sparse {r['sparse_s'] * 1e3:8.2f} ms  sparse/dense {r['sparse_over_dense']:.2f}")
    print(f"backend {jax.default_backend()}: moe='auto' is {'dense' if jax.default_backend() == 'cpu' else 'sparse'}")
    write_results("bench_moe", {"tokens": args.tokens, "rows": rows})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["expert_params"] for r in rows], [r["sparse_over_dense"] for r in rows], "o-")
    ax.axhline(1.0, color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("expert parameters per layer (E · 3 · d · f)")
    ax.set_ylabel("sparse time / dense time (CPU)")
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / "bench_moe.png", dpi=120)


if __name__ == "__main__":
    main()
