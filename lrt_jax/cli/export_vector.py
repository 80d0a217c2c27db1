"""``lrt-jax export-vector``: saved steering vectors as one file another tool reads.

``--format gguf`` writes a llama.cpp control vector (:func:`lrt_jax.steering.save_gguf`):
each vector, saved by ``lrt-jax steer`` (one ``name.safetensors`` file) at a
``layers.{i}.resid_post`` site, becomes the tensor ``direction.{i}``, which llama.cpp
adds to block ``i``'s output. Use it with ``llama-cli -m model.gguf
--control-vector-scaled out.gguf 1.0``.
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("export-vector", help="write saved steering vectors as a llama.cpp control vector")
    parser.add_argument("vectors", nargs="+", type=Path,
                        help="saved vectors (<name>.safetensors), one per layers.{i}.resid_post site")
    parser.add_argument("--format", choices=["gguf"], default="gguf", help="output format (default gguf)")
    parser.add_argument("--model-hint", default=None,
                        help="controlvector.model_hint (default: the vectors' common metadata.model)")
    parser.add_argument("--out", required=True, type=Path, help="output file, e.g. vector.gguf")
    parser.set_defaults(func=run)


def run(args) -> int:
    from lrt_jax import steering

    vectors = [steering.load_vector(path) for path in args.vectors]
    steering.save_gguf(args.out, vectors, args.model_hint)
    sites = ", ".join(v.metadata.site for v in sorted(vectors, key=lambda v: v.metadata.site))
    print(f"wrote {args.out}: {len(vectors)} control-vector layer(s) ({sites})")
    return 0
