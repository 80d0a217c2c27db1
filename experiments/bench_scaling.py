"""Throughput of capture and of sufficient-statistics accumulation vs number of devices.

Each device count runs in its own process (the device count of the CPU backend is
fixed when JAX starts: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``; on a
GPU/TPU host the real devices are used and ``--devices`` picks how many). The global
batch stays fixed and is split over a ``data=N`` mesh, so ideal scaling is N×.

Fake CPU devices share the machine's cores, so on a 2-core laptop the curve shows the
overhead of sharding, not a speed-up; run it on an accelerator host for the real one.

    python experiments/bench_scaling.py --devices 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def measure(n_devices: int, args) -> dict:
    """Runs inside a process whose JAX sees ``n_devices`` devices."""
    import jax
    import numpy as np

    import lrt_jax
    from _bench_utils import time_call
    from lrt_jax import mappers, parallel

    devices = jax.devices()[:n_devices]
    mesh = parallel.make_mesh(f"data={n_devices}", devices=devices)
    config = lrt_jax.ModelConfig("llama", 8192, args.d_model, args.layers, args.d_model // 64, args.d_model // 128,
                                 64, 4 * args.d_model, 4096)
    lm = parallel.shard_lm(lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(0))), mesh)
    tokens = parallel.shard_batch(np.random.default_rng(0).integers(0, 8192, (args.batch, args.seq)), mesh)
    sites = lrt_jax.all_sites(config, "resid_post")
    capture_s = time_call(lambda: jax.block_until_ready(lrt_jax.capture(lm, tokens, sites)), repeats=args.repeats)

    rows = args.batch * args.seq
    x = parallel.shard_batch(np.random.default_rng(1).standard_normal((rows, args.d_model), np.float32), mesh)
    y = parallel.shard_batch(np.random.default_rng(2).standard_normal((rows, 2 * args.d_model), np.float32), mesh)
    stats0 = mappers.init_stats(args.d_model, 2 * args.d_model)
    accumulate = jax.jit(mappers.accumulate_stats)
    stats_s = time_call(lambda: jax.block_until_ready(accumulate(stats0, x, y)), repeats=args.repeats)
    return {"devices": n_devices, "device_kind": devices[0].device_kind,
            "capture_tokens_per_s": rows / capture_s, "stats_rows_per_s": rows / stats_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        print(json.dumps(measure(args.worker, args)))
        return

    results = []
    for n in (int(d) for d in args.devices.split(",")):
        env = dict(os.environ)
        if "cuda" not in env.get("JAX_PLATFORMS", "") and "tpu" not in env.get("JAX_PLATFORMS", ""):
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
        command = [sys.executable, __file__, "--worker", str(n)] + [a for a in sys.argv[1:] if a != "--worker"]
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=HERE).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        row = results[-1]
        print(f"{n} devices: capture {row['capture_tokens_per_s']:10.0f} tokens/s "
              f"({row['capture_tokens_per_s'] / results[0]['capture_tokens_per_s']:.2f}x), "
              f"stats {row['stats_rows_per_s']:12.0f} rows/s "
              f"({row['stats_rows_per_s'] / results[0]['stats_rows_per_s']:.2f}x)")

    sys.path.insert(0, str(HERE))
    from _bench_utils import write_results

    path = write_results("bench_scaling", {"config": vars(args), "runs": results}, args.out)
    plot(results, path.with_suffix(".png"))
    print(f"wrote {path}")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = [r["devices"] for r in results]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key, label in (("capture_tokens_per_s", "capture (tokens/s)"), ("stats_rows_per_s", "statistics (rows/s)")):
        ax.plot(devices, [r[key] / results[0][key] for r in results], "o-", label=label)
    ax.plot(devices, devices, "k:", label="ideal")
    ax.set_xlabel("devices (data axis)")
    ax.set_ylabel("throughput relative to 1 device")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.legend(fontsize=8)
    ax.set_title(f"scaling on {results[0]['device_kind']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
