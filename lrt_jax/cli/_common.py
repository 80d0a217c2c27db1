"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_argument(parser: argparse.ArgumentParser, name: str = "--model", **kwargs) -> None:
    parser.add_argument(name, required=True, help="HF checkpoint directory (config.json + safetensors)", **kwargs)


def add_output_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(default), help=f"output directory (default {default})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace this command's results already in --out (otherwise such a directory is refused)")


def add_mesh_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mesh", default=None, help="shard over devices, e.g. 'data=4,fsdp=2,tensor=1'")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host TPU/GPU runs)")


def check_limit(args) -> None:
    """Refuse a ``--limit`` below 1 (slicing with it would silently drop items from the end)."""
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit}: give a positive number of items (or leave it out for all).")


def read_prompts(path: Path) -> list[str]:
    """One prompt per non-empty line of a text file."""
    lines = [line.rstrip("\n") for line in Path(path).read_text().splitlines()]
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts (one per line expected).")
    return prompts
