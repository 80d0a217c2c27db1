"""``lrt-jax steer``: a CAA steering vector from A/B contrast pairs, saved with its provenance.

Each item of a CAA ``generate_dataset.json`` gives two examples, the A/B prompt
(ending with ``"("``) completed with the behaviour-matching letter and with the other
letter. Their activations at ``--site`` are read at the answer-letter token (the CAA
convention: :func:`lrt_jax.capture_texts` with ``position="answer_letter"``) and the
vector is the difference of their means (:func:`lrt_jax.steering.diff_of_means`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrt_jax.cli._common import add_mesh_argument, add_model_argument, check_limit


def add_prompt_format_arguments(parser) -> None:
    parser.add_argument("--format", choices=["plain", "chat"], default="plain",
                        help="prompt style: plain 'Question: ...\\nAnswer:' (base models) or the chat template")
    parser.add_argument("--system-prompt", default=None, help="optional system text")


def register(subparsers) -> None:
    parser = subparsers.add_parser("steer", help="estimate a CAA steering vector from A/B contrast pairs")
    add_model_argument(parser)
    parser.add_argument("--data", required=True, type=Path, help="CAA generate_dataset.json (A/B items)")
    parser.add_argument("--site", required=True, help="site to read and later steer, e.g. layers.12.resid_post")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N items")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", required=True, type=Path, help="output vector file, <name>.safetensors (+ .json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing vector at --out")
    add_prompt_format_arguments(parser)
    add_mesh_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from lrt_jax import capture_texts, steering, tasks
    from lrt_jax.cli._runtime import prepare_model
    from lrt_jax.sites import check_site, site_width

    check_limit(args)
    steering.check_vector_destination(args.out, overwrite=args.overwrite)
    items = tasks.load_caa_ab(args.data)[:args.limit]
    if not items:
        raise ValueError(f"{args.data} holds no A/B items; a steering vector needs at least one contrast pair.")
    lm, place_batch, batch_size = prepare_model(args)
    site = check_site(lm.config, args.site)
    fmt = tasks.PromptFormat(args.format, args.system_prompt)
    pairs = [tasks.format_ab_contrast_pair(item, fmt, lm.tokenizer) for item in items]
    options = dict(position="answer_letter", add_special_tokens=fmt.add_special_tokens, batch_size=batch_size,
                   place_batch=place_batch)
    matching = capture_texts(lm, [p for p, _ in pairs], [site], letters=[i.answer_matching for i in items],
                             desc="matching", **options)[site]
    not_matching = capture_texts(lm, [n for _, n in pairs], [site], letters=[i.answer_not_matching for i in items],
                                 desc="not matching", **options)[site]
    info = steering.VectorInfo(model=lm.name, site=site, d_model=site_width(lm.config, site),
                               position_rule="answer_letter", estimator="diff_of_means", dataset=str(args.data),
                               count=len(items))
    vector = steering.SteeringVector(steering.diff_of_means(matching, not_matching).vector, info)
    steering.save_vector(vector, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: diff of means over {len(items)} pairs at {site}, "
          f"norm {float(np.linalg.norm(vector.vector)):.4g}")
    return 0
