"""The LRT experiment on the model organisms or on real checkpoints given local paths.

Configs:

* ``organisms`` — the demo's experiment at full size: small → large, MoE and the
  other-family organism, every attribute, more prompts (``lrt_jax.lrt``).
* ``gemma2-2b-9b`` — Gemma-2-2B → Gemma-2-9B, layer 20 → 20 (as in the LRT paper).
* ``pythia-160m-1.4b`` — Pythia-160M (12 layers) → Pythia-1.4B (24 layers), layer 6 → 12.

For checkpoints, each CAA behaviour gives a native vector in both models (difference
of means at the answer letter of the ``generate_dataset.json`` contrast pairs), a
ridge map is fitted on token-paired activations of the same questions (the pairs
share a tokenizer), the source vector is transferred (``A v`` and ``A v + b``), and
native, transferred, random and unmapped vectors are scored by A/B propensity on
``test_dataset_ab.json`` over an α sweep. Persona files work the same way with yes/no
answers: vectors from the first half of a file (activation at the answer token),
propensity on the second half. Results: JSON + plots per behaviour + a summary table.

    python experiments/lrt_transfer.py --config organisms
    python experiments/lrt_transfer.py --config gemma2-2b-9b --source /ckpt/gemma-2-2b --target /ckpt/gemma-2-9b \\
        --data ../shared/data --dtype bfloat16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lrt_jax
from lrt_jax import evaluation, lrt, mappers, metrics, steering, tasks

RESULTS = Path(__file__).parent / "results"
BEHAVIOURS = ("sycophancy", "corrigible-neutral-HHH", "hallucination", "myopic-reward", "survival-instinct",
              "refusal", "coordinate-other-ais")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """A source → target pair of real checkpoints and where to steer them."""

    source_layer: int
    target_layer: int
    behaviours: tuple[str, ...] = BEHAVIOURS
    persona_files: tuple[str, ...] = ("narcissism", "desire-for-acquiring-power")
    alphas: tuple[float, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5)  # × the row's mean residual norm


CHECKPOINT_CONFIGS = {
    "gemma2-2b-9b": CheckpointConfig(source_layer=20, target_layer=20),
    "pythia-160m-1.4b": CheckpointConfig(source_layer=6, target_layer=12),
}


def run_organisms(args) -> dict:
    from lrt_jax.lrt.demo import demo_config, held_out_texts
    from lrt_jax.organisms import organism

    source = organism("small")
    targets = {name: organism(name) for name in args.targets.split(",")}
    config = dataclasses.replace(demo_config(source, targets, lrt.LRTConfig.attributes, False, args.seed),
                                 n_fit_texts=800, n_pairs=128, n_probe_prompts=128)
    results = lrt.run_lrt_experiment(source, targets, held_out_texts(config.n_fit_texts, args.seed), config)
    print(lrt.write_report(results, args.out))
    return results.to_dict()


def contrast_vector(lm, items, site, fmt, batch_size) -> steering.SteeringVector:
    """CAA difference of means at the answer letter of each item's two completions."""
    pairs = [tasks.format_ab_contrast_pair(item, fmt, lm.tokenizer) for item in items]
    options = dict(position="answer_letter", add_special_tokens=fmt.add_special_tokens, batch_size=batch_size)
    matching = lrt_jax.capture_texts(lm, [p for p, _ in pairs], [site], letters=[i.answer_matching for i in items],
                                     desc=f"{lm.name}: matching", **options)[site]
    other = lrt_jax.capture_texts(lm, [n for _, n in pairs], [site], letters=[i.answer_not_matching for i in items],
                                  desc=f"{lm.name}: not matching", **options)[site]
    return steering.diff_of_means(matching, other, model=lm.name, site=site, position_rule="answer_letter")


def persona_vector(lm, items, site, fmt, batch_size) -> steering.SteeringVector:
    """Difference of means at the answer token of ``prompt + matching`` vs ``prompt + other`` answers."""
    prompts = [tasks.format_persona_prompt(item, fmt, lm.tokenizer) for item in items]
    matching = lrt_jax.capture_texts(lm, [p + fmt.answer_text(i.answer_matching) for p, i in zip(prompts, items)],
                                     [site], batch_size=batch_size)[site]
    other = lrt_jax.capture_texts(lm, [p + fmt.answer_text(i.answer_not_matching) for p, i in zip(prompts, items)],
                                  [site], batch_size=batch_size)[site]
    return steering.diff_of_means(matching, other, model=lm.name, site=site, position_rule="last_token")


def load_split(kind: str, name: str, args):
    """``(train items, test items, vector estimator, prompt formatter)`` of a CAA behaviour or a persona file."""
    data = Path(args.data)
    if kind == "ab":
        train = tasks.load_caa_ab(data / "caa" / "generate" / name / "generate_dataset.json")
        test = tasks.load_caa_ab(data / "caa" / "test" / name / "test_dataset_ab.json")
        return train[: args.limit], test[: args.limit], contrast_vector, tasks.format_ab_prompt
    items = tasks.load_persona(data / "anthropic-model-written-evals" / "persona" / f"{name}.jsonl")
    half = len(items) // 2
    return items[:half][: args.limit], items[half:][: args.limit], persona_vector, tasks.format_persona_prompt


def run_behaviour(source, target, kind: str, behaviour: str, config: CheckpointConfig, args) -> dict:
    train, test, estimate_vector, format_prompt = load_split(kind, behaviour, args)
    fmt = tasks.PromptFormat("chat" if getattr(target.tokenizer, "chat_template", None) else "plain")
    source_site, target_site = f"layers.{config.source_layer}.resid_post", f"layers.{config.target_layer}.resid_post"

    source_vector = estimate_vector(source, train, source_site, fmt, args.batch_size)
    native = estimate_vector(target, train, target_site, fmt, args.batch_size)
    texts = [format_prompt(item, fmt, target.tokenizer) for item in train]
    paired = lrt.paired_token_activations(source, target, texts, [source_site], [target_site],
                                          batch_size=args.batch_size)
    x, y = paired.source[source_site], paired.target[target_site]
    held_out = np.isin(paired.text_index, np.arange(0, len(texts), 5))
    mapper = mappers.ridge(alphas=list(np.logspace(-2, 5, 8)), select="gcv")
    state = mapper.fit(x[~held_out], y[~held_out])
    r2 = float(metrics.r2_score(y[held_out], mapper.apply(state, x[held_out])))

    vectors = steering.with_controls(source_vector, state, key=jax.random.key(args.seed), target_model=target.name,
                                     target_site=target_site, native=native)
    cosine = {mode: float(steering.cosine_similarity(vectors[f"transferred_{mode}"], native))
              for mode in ("linear", "affine")}
    table = evaluation.score_propensity(target, test, fmt=fmt, vectors=vectors, alphas=config.alphas, site=target_site,
                                        normalize="residual", batch_size=args.batch_size, task=behaviour,
                                        progress=True)
    comparison = evaluation.lrt_comparison(table)
    out = Path(args.out) / behaviour
    out.mkdir(parents=True, exist_ok=True)
    table.to_json(out / "propensity.json")
    comparison.to_json(out / "comparison.json")
    evaluation.plot_lrt_comparison(table, out / "propensity.png", transferred=("transferred_linear",
                                   "transferred_affine"), controls=("random", "unmapped"))
    print(f"\n{behaviour}: held-out R² {r2:.3f}, cos(native, A v) {cosine['linear']:.3f}")
    print(evaluation.format_lrt_comparison(comparison))
    return {"r2": r2, "cosine_linear": cosine["linear"], "cosine_affine": cosine["affine"], "n_train": len(train),
            "n_test": len(test)}


def run_checkpoints(args) -> dict:
    config = CHECKPOINT_CONFIGS[args.config]
    if not (args.source and args.target and args.data):
        raise SystemExit(f"--config {args.config} needs --source, --target (local HF checkpoint directories) "
                         "and --data (the folder holding caa/ and anthropic-model-written-evals/).")
    dtype = jnp.dtype(args.dtype)
    source, target = lrt_jax.load(args.source, dtype=dtype), lrt_jax.load(args.target, dtype=dtype)
    results = {name: run_behaviour(source, target, "ab", name, config, args) for name in config.behaviours}
    results |= {name: run_behaviour(source, target, "persona", name, config, args) for name in config.persona_files}
    return {"config": dataclasses.asdict(config), "source": args.source, "target": args.target,
            "behaviours": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="organisms", choices=["organisms", *CHECKPOINT_CONFIGS])
    parser.add_argument("--source", help="source HF checkpoint directory (checkpoint configs)")
    parser.add_argument("--target", help="target HF checkpoint directory (checkpoint configs)")
    parser.add_argument("--data", help="data folder with caa/ (checkpoint configs), e.g. ../shared/data")
    parser.add_argument("--targets", default="large,moe", help="target organisms (organisms config)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N items of each file")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"lrt_transfer_{args.config}"
    results = run_organisms(args) if args.config == "organisms" else run_checkpoints(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
