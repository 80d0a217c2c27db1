"""``lrt-jax plan``: compile a job without weights and say whether it fits a topology."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("plan", help="compile a job without weights and report memory, flops and "
                                                "collectives per device")
    parser.add_argument("--config", required=True,
                        help="a config.json file, a checkpoint directory holding one, or a published name "
                             "(gemma-2-2b, gemma-2-9b, llama-3.1-8b, mistral-7b, mixtral-8x7b, olmoe-1b-7b, "
                             "qwen1.5-moe-a2.7b)")
    parser.add_argument("--topology", default="cpu:8", help="cpu:N, or a TPU topology such as v5e:2x4 or v5p:2x2x1")
    parser.add_argument("--mesh", default="fsdp=8", help="mesh axes, e.g. fsdp=8 or data=2,fsdp=4")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq", type=int, required=True)
    parser.add_argument("--job", default="capture", help="capture, forward or generate")
    parser.add_argument("--sites", default="all-resid", help="all-resid (every resid_post) or SITE,SITE,...")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--execution", default="",
                        help="how to compute, KEY=VALUE,...: attention=auto|materialized|blockwise|dot_product|splash, "
                             "moe=auto|dense|sparse, scan_layers=true|false, remat=none|block|dots, attention_block=N")
    parser.add_argument("--no-pin-activations", action="store_true",
                        help="leave activation placement to GSPMD (no sharding constraints, MoE outside shard_map)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.set_defaults(func=run)


def read_config(path: str):
    """A :class:`ModelConfig` from a ``config.json`` file or a checkpoint directory (no weights read)."""
    from lrt_jax.loading import config_from_hf
    from lrt_jax.parallel.published import PUBLISHED_CONFIGS, published_config

    file = Path(path)
    if not file.exists() and path.lower() in PUBLISHED_CONFIGS:
        return published_config(path)
    if file.is_dir():
        file = file / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"--config {path}: no config.json there; give a config.json or a checkpoint dir.")
    return config_from_hf(json.loads(file.read_text()))


def parse_execution(text: str) -> dict:
    """``"moe=dense,scan_layers=false"`` → ``{"moe": "dense", "scan_layers": False}``."""
    settings = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--execution item {item!r} is not KEY=VALUE (e.g. moe=sparse,attention=blockwise).")
        lowered = value.lower()
        settings[key.strip()] = (lowered == "true" if lowered in ("true", "false")
                                 else int(value) if value.isdigit() else value.strip())
    return settings


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _gib(n) -> str:
    return "-" if n is None else f"{n / 2**30:.3f} GiB"


def run(args) -> int:
    from lrt_jax.parallel import plan

    result = plan(read_config(args.config), topology=args.topology, mesh=args.mesh, batch=args.batch,
                  seq=args.seq, job=args.job, sites=args.sites, max_new_tokens=args.max_new_tokens,
                  dtype=args.dtype, execution=parse_execution(args.execution),
                  pin_activations=not args.no_pin_activations)
    if args.json:
        print(result.to_json())
        return 0
    rows = [("job", f"{result.job} on {result.topology}, mesh {result.mesh}"), ("fits", str(result.fits)),
            *((f"{k} / device", _gib(v)) for k, v in result.per_device_bytes.items()),
            ("hbm / device", _gib(result.hbm_bytes)),
            ("flops (global)", _number(result.flops, ".4g")), ("ideal flops", _number(result.ideal_flops, ".4g")),
            ("flops ratio", _number(result.flops_ratio, ".3f")),
            *((f"{k} / device", _gib(v)) for k, v in result.collective_bytes.items() if v),
            ("params total / active", f"{result.params_total:,} / {result.params_active:,}"),
            ("compile", f"{result.compile_s:.2f} s"),
            ("execution", ", ".join(f"{k}={v}" for k, v in result.execution.items() if v not in (None, [], ())))]
    if result.execution.get("scan_layers"):
        rows.append(("note", "XLA counts a scanned layer's flops once; for flops use --execution scan_layers=false"))
    if result.note:
        rows.append(("note", result.note))
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    return 0
