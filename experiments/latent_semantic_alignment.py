"""Latent semantic alignment (issue 8, method 2): move a teacher's fact knowledge into one student layer.

Task: fact recall (``fact : zorvia has the capital`` → ``plenko``), where the
``large-long`` organism knows rare facts the ``small`` one does not. The facts are split by rank
parity: the student sees the answers of the *train* facts (task loss), and only the
prompts of the *held-out* facts — their answers can reach it only through the teacher.

For each chosen student layer ``s`` (relative-depth pairing with the teacher), rank-r
LoRA adapters on that layer's projections are trained for the same number of steps
under four objectives, on one batch of all rows (train facts with answers, held-out
facts as prompts):

* ``no_transfer`` — next-token cross-entropy on the rows (the task loss) only;
* ``latent_semantic_alignment`` — task loss + cosine loss between the student's
  ``layers.{s}.resid_post`` and the teacher's interpolated residual translated through
  the semantic bases (teacher coefficients → student bases);
* ``random_map`` — the same, with the alignment replaced by a random matrix with
  orthonormal columns (a control: does *any* teacher-derived target help?);
* ``logit_distillation`` — KL(teacher ‖ student) of next-token distributions only;
* ``latent_semantic_alignment_kl`` — the cosine layer loss with that KL as its output
  loss: does the aligned layer target add anything to logit distillation?

Reported: recall accuracy (greedy next token) on train and held-out facts before and
after, and on the held-out facts the teacher knows but the student did not.

Which way round: the teacher is ``large-long`` (the ``large`` model trained 4× longer;
it recalls 88% / 96% of the train / held-out facts, ``small`` 54% / 42%), the student
``small`` — large → small, as in the brief. The 400-step ``large`` recalls fewer facts
than ``small``; the runs with it are kept as ``--tag large_to_small`` and, the other
way round, ``--tag small_to_large``.

    python experiments/latent_semantic_alignment.py            # large-long → small, ~1 min on 2 cores (+6 min to train large-long once)
    python experiments/latent_semantic_alignment.py --config real.json --student-layers 10,20
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import lrt_jax  # noqa: E402
from _knowledge_support import (  # noqa: E402
    RESULTS_DIR, Stopwatch, result_name, first_answer_token_ids, items_from_config, load_teacher_and_student,
    next_token_correct, write_json)
from lrt_jax.knowledge import (  # noqa: E402
    LayerTransferBatch, LayerTransferLoss, effective_lm_head, init_lora_adapters, interpolate_teacher_layers,
    merge_lora_adapters, pair_student_layer, projection_kernel_paths, random_orthonormal_basis,
    semantic_alignment_matrix, semantic_bases, train_layer_with_lora, translate_activations)
from lrt_jax.organisms import get_recipe, make_fact_table  # noqa: E402
from lrt_jax.organisms.tasks import fact_recall_items  # noqa: E402
from lrt_jax.text import encode  # noqa: E402

NAME = "latent_semantic_alignment"
METHODS = ("no_transfer", "latent_semantic_alignment", "random_map", "logit_distillation",
           "latent_semantic_alignment_kl")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="JSON with local teacher/student checkpoint paths (see _knowledge_support)")
    parser.add_argument("--teacher", default="large-long", help="teacher organism (without --config)")
    parser.add_argument("--student", default="small", help="student organism (without --config)")
    parser.add_argument("--student-layers", default=None, help="comma-separated student layers (default: middle and last)")
    parser.add_argument("--projections", default="attn/o_proj,mlp/gate_proj,mlp/up_proj,mlp/down_proj")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--layer-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="results go to results/<name>[.<tag>].json/.png")
    return parser.parse_args()


def fact_items(config: dict, organism_name: str):
    """The ``--config`` items, else one recall item per fact of the organism's table (most frequent first)."""
    items = items_from_config(config)
    if items is not None:
        return items
    corpus = get_recipe(organism_name).corpus
    return fact_recall_items(make_fact_table(corpus.fact_count, corpus.fact_table_seed))


def random_semi_orthogonal_map(key, d_teacher: int, d_student: int) -> jax.Array:
    """A random ``[d_teacher, d_student]`` map with orthonormal columns, or orthonormal rows when ``d_teacher < d_student``."""
    if d_teacher >= d_student:
        return random_orthonormal_basis(key, d_teacher, d_student)
    return random_orthonormal_basis(key, d_student, d_teacher).T


def evaluate(student, params, split_items: dict, answer_ids: dict) -> dict:
    return {split: next_token_correct(student, params, [item.prompt for item in items], answer_ids[split])
            for split, items in split_items.items()}


def summarise(correct: dict, teacher_only: np.ndarray) -> dict:
    return {"train": float(correct["train"].mean()), "held_out": float(correct["held_out"].mean()),
            "held_out_teacher_only": float(correct["held_out"][teacher_only].mean()) if teacher_only.any() else None}


def main():
    args = parse_args()
    clock = Stopwatch()
    teacher, student, config = load_teacher_and_student(args.config, args.teacher, args.student)
    items = fact_items(config, args.student)
    split_items = {"train": items[0::2], "held_out": items[1::2]}
    answer_ids = {split: first_answer_token_ids(student.tokenizer, [item.answer for item in split_items[split]])
                  for split in split_items}

    teacher_correct = evaluate(teacher, teacher.params, split_items, answer_ids)
    student_correct = evaluate(student, student.params, split_items, answer_ids)
    teacher_only = teacher_correct["held_out"] & ~student_correct["held_out"]
    print(f"teacher {summarise(teacher_correct, teacher_only)}  student before {summarise(student_correct, teacher_only)}")

    rows = encode(student, [f"{item.prompt} {item.answer}" for item in split_items["train"]]
                  + [item.prompt for item in split_items["held_out"]])
    tokens, mask = jnp.asarray(rows.tokens), jnp.asarray(rows.attention_mask)
    T, S = teacher.config.n_layers, student.config.n_layers
    captured = lrt_jax.capture(teacher, tokens, [f"layers.{i}.resid_post" for i in range(T)] + ["logits"],
                               attention_mask=mask)
    teacher_layers = [captured[f"layers.{i}.resid_post"] for i in range(T)]
    alignment = semantic_alignment_matrix(semantic_bases(effective_lm_head(teacher)),
                                          semantic_bases(effective_lm_head(student)))
    random_map = random_semi_orthogonal_map(jax.random.key(args.seed + 1), teacher.config.d_model, student.config.d_model)

    layers = sorted({S // 2, S - 1}) if args.student_layers is None else [int(x) for x in args.student_layers.split(",")]
    optimizer = optax.adam(args.learning_rate)
    results = {}
    for layer in layers:
        pairing = pair_student_layer(layer, S, T)
        interpolated = interpolate_teacher_layers(pairing, teacher_layers)
        aligned = translate_activations(interpolated, alignment)
        targets = {"latent_semantic_alignment": aligned, "latent_semantic_alignment_kl": aligned,
                   "random_map": translate_activations(interpolated, random_map)}
        site = f"layers.{layer}.resid_post"
        specs = {"no_transfer": LayerTransferLoss(site, layer_weight=0.0),
                 "latent_semantic_alignment": LayerTransferLoss(site, layer_weight=args.layer_weight),
                 "random_map": LayerTransferLoss(site, layer_weight=args.layer_weight),
                 "logit_distillation": LayerTransferLoss(site, layer_weight=0.0, output_loss="kl_to_teacher"),
                 "latent_semantic_alignment_kl": LayerTransferLoss(site, layer_weight=args.layer_weight,
                                                                   output_loss="kl_to_teacher")}
        paths = projection_kernel_paths(layer, args.projections.split(","))
        results[layer] = {"pairing": pairing._asdict()}
        for method in METHODS:
            adapters = init_lora_adapters(jax.random.key(args.seed), student.params, paths, args.rank)
            batch = LayerTransferBatch(tokens, mask, targets.get(method, jnp.zeros(tokens.shape + (student.config.d_model,))),
                                       captured["logits"])
            trained, history = train_layer_with_lora(student.config, student.params, adapters, lambda step: batch,
                                                     specs[method], optimizer, args.steps)
            correct = evaluate(student, merge_lora_adapters(student.params, trained), split_items, answer_ids)
            results[layer][method] = {**summarise(correct, teacher_only),
                                      "final_loss": {k: float(v[-1]) for k, v in history.items()}}
            print(f"layer {layer} ({pairing.teacher_position:.2f}) {method:26s} {results[layer][method]}")

    payload = {
        "experiment": NAME, "teacher_model": teacher.name, "student_model": student.name, "args": vars(args),
        "n_items": {split: len(split_items[split]) for split in split_items},
        "n_held_out_teacher_only": int(teacher_only.sum()),
        "teacher": summarise(teacher_correct, teacher_only), "student_before": summarise(student_correct, teacher_only),
        "after": {str(layer): value for layer, value in results.items()}, "seconds": clock.seconds(),
    }
    print("wrote", write_json(result_name(NAME, args.tag), payload), "in", payload["seconds"], "s")
    plot(payload, layers)


def plot(payload: dict, layers):
    figure, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    width = 0.8 / len(METHODS)
    for axis, split in zip(axes, ("train", "held_out", "held_out_teacher_only")):
        for index, method in enumerate(METHODS):
            values = [payload["after"][str(layer)][method][split] or 0.0 for layer in layers]
            axis.bar(np.arange(len(layers)) + (index - (len(METHODS) - 1) / 2) * width, values, width, label=method)
        axis.axhline(payload["student_before"][split] or 0.0, color="k", linestyle="--", label="student before")
        axis.axhline(payload["teacher"][split] or 0.0, color="tab:red", linestyle=":", label="teacher")
        axis.set_xticks(np.arange(len(layers)), [f"student layer {layer}" for layer in layers])
        axis.set_title(split.replace("_", " "))
    axes[0].set_ylabel("fact recall accuracy")
    axes[-1].legend(fontsize=7, loc="upper right")
    figure.suptitle(f"Latent semantic alignment: {payload['teacher_model']} → {payload['student_model']}, LoRA on one layer")
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"{result_name(NAME, payload['args']['tag'])}.png", dpi=120)


if __name__ == "__main__":
    main()
