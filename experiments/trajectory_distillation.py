"""Low-rank trajectory distillation (issue 8, method 3): a reasoning teacher, a direct-answer student.

Task: two-operand sums. The teacher (``large-long`` organism) answers with a chain of
thought, ``sum : 3 plus 4 : 4 5 6 7 so 7 .``; the student (``small``) must answer at
once, ``sum : 3 plus 4 equals 7 .``. The 100 sums are split 70 / 30 (seeded); the
student trains on the direct-answer documents of the train sums and is scored on
both splits (greedy next token after ``equals``).

Teacher trajectories are its residual states (every layer) over the reasoning tokens
(from the ``:`` that opens the chain through ``so``) of the correct, teacher-forced
chain of each train sum. The shared subspace, statistics, readout and loss are
those of :mod:`lrt_jax.knowledge.trajectory_distillation`; the student points whose
statistics are matched are its prompt tokens after ``sum :`` (operands, ``plus``,
``equals``), at every student layer paired by relative depth. The statistic weight
is normalised by the untrained student's statistic loss, so ``--statistic-weight``
is the term's starting size relative to a unit of cross-entropy.

All methods train the same parameters (all of them, or LoRA with ``--lora-rank``) for
the same steps:

* ``no_transfer`` — task cross-entropy only;
* ``trajectory_distillation`` — task loss + statistic loss in the SVD subspace;
* ``random_subspace`` — the same in a random orthonormal subspace of equal rank;
* ``logit_distillation`` — task loss + KL(teacher ‖ student) between the teacher's
  answer distribution after its chain (at ``so``) and the student's after ``equals``.

Which way round: the teacher is ``large-long`` (the ``large`` model trained 4× longer;
its chains of thought are right on 93% / 90% of the train / test sums), the student
``small`` — large → small, as in the brief. The 400-step ``large`` mostly gets its
chains wrong; the runs with it are kept as ``--tag large_to_small`` and, the other
way round, ``--tag small_to_large``.

    python experiments/trajectory_distillation.py              # large-long → small, ~1 min on 2 cores
    python experiments/trajectory_distillation.py --config real.json     # teacher/student paths
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
    RESULTS_DIR, Stopwatch, result_name, first_answer_token_ids, load_teacher_and_student, next_token_correct, write_json)
from lrt_jax import generate  # noqa: E402
from lrt_jax.knowledge import (  # noqa: E402
    TrajectoryDistillationBatch, TrajectoryDistillationLoss, TrajectorySubspace, fit_student_readout,
    fit_trajectory_subspace, init_lora_adapters, interpolate_teacher_layers, kl_to_teacher, merge_lora_adapters,
    next_token_cross_entropy, optimize_trainable, pair_student_layer, project_on_subspace,
    projection_kernel_paths, random_orthonormal_basis, run_and_read_site, trajectory_distillation_loss,
    trajectory_statistics)
from lrt_jax.organisms.tasks import arithmetic_prompt, extract_final_answer, write_arithmetic_document  # noqa: E402
from lrt_jax.text import decode, encode  # noqa: E402

NAME = "trajectory_distillation"
METHODS = ("no_transfer", "trajectory_distillation", "random_subspace", "logit_distillation")
HEADER = "sum :"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="JSON with local teacher/student checkpoint paths (see _knowledge_support)")
    parser.add_argument("--teacher", default="large-long", help="teacher organism (without --config)")
    parser.add_argument("--student", default="small", help="student organism (without --config)")
    parser.add_argument("--max-operand", type=int, default=9)
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--explained-variance", type=float, default=0.9)
    parser.add_argument("--statistic-weight", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lora-rank", type=int, default=0, help="0: train all parameters; r: LoRA on every layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="results go to results/<name>[.<tag>].json/.png")
    return parser.parse_args()


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def sums(max_operand: int, train_fraction: float, seed: int) -> dict[str, list[tuple[int, int]]]:
    pairs = [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]
    order = np.random.default_rng(seed).permutation(len(pairs))
    cut = int(round(train_fraction * len(pairs)))
    return {"train": [pairs[i] for i in order[:cut]], "test": [pairs[i] for i in order[cut:]]}


def teacher_chain_of_thought_correct(teacher, pairs) -> np.ndarray:
    """Greedy chains of thought of the teacher, scored on the word after their last ``so``."""
    batch = encode(teacher, [arithmetic_prompt(a, b, True) for a, b in pairs])
    out = generate(teacher, batch.tokens, attention_mask=batch.attention_mask, max_new_tokens=max(b for _, b in pairs) + 4,
                   stop_tokens=(teacher.tokenizer.eos_token_id, teacher.tokenizer.convert_tokens_to_ids(".")))
    completions = decode(teacher, out.tokens, out.generated_mask)
    return np.asarray([extract_final_answer(text) == str(a + b) for text, (a, b) in zip(completions, pairs)])


def reasoning_positions(tokenizer, pairs, seq: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``[n, tokens]`` (clipped) and mask of each chain's reasoning tokens in a left-padded batch."""
    spans = []
    for a, b in pairs:
        document = write_arithmetic_document(a, b, True)
        offset = seq - token_count(tokenizer, document)
        first = token_count(tokenizer, arithmetic_prompt(a, b, True)) - 1
        last = token_count(tokenizer, document.rsplit(" so ", 1)[0] + " so") - 1
        spans.append(np.arange(first, last + 1) + offset)
    width = max(map(len, spans))
    mask = np.asarray([[i < len(span) for i in range(width)] for span in spans])
    index = np.asarray([np.pad(span, (0, width - len(span)), mode="edge") for span in spans])
    return index, mask


def main():
    args = parse_args()
    clock = Stopwatch()
    teacher, student, _ = load_teacher_and_student(args.config, args.teacher, args.student)
    split = sums(args.max_operand, args.train_fraction, args.seed)
    answer_ids = {name: first_answer_token_ids(student.tokenizer, [str(a + b) for a, b in pairs])
                  for name, pairs in split.items()}
    direct_prompts = {name: [arithmetic_prompt(a, b, False) for a, b in pairs] for name, pairs in split.items()}

    def student_accuracy(params) -> dict:
        return {name: float(next_token_correct(student, params, direct_prompts[name], answer_ids[name]).mean())
                for name in split}

    teacher_cot = {name: float(teacher_chain_of_thought_correct(teacher, pairs).mean()) for name, pairs in split.items()}
    teacher_direct = {name: float(next_token_correct(teacher, teacher.params, direct_prompts[name], answer_ids[name]).mean())
                      for name in split}
    student_before = student_accuracy(student.params)
    print(f"teacher CoT {teacher_cot}  teacher direct {teacher_direct}  student direct before {student_before}")

    # Teacher trajectories on the correct chains of the train sums, and both models' states on them.
    train_pairs = split["train"]
    chains = encode(teacher, [write_arithmetic_document(a, b, True) for a, b in train_pairs])
    T, S = teacher.config.n_layers, student.config.n_layers
    teacher_sites = [f"layers.{i}.resid_post" for i in range(T)]
    student_sites = tuple(f"layers.{s}.resid_post" for s in range(S))
    captured = lrt_jax.capture(teacher, chains.tokens, teacher_sites + ["logits"], attention_mask=chains.attention_mask)
    student_on_chains = lrt_jax.capture(student, chains.tokens, student_sites, attention_mask=chains.attention_mask)
    index, reasoning_mask = reasoning_positions(teacher.tokenizer, train_pairs, chains.tokens.shape[1])
    rows = np.arange(len(train_pairs))[:, None]
    trajectories = jnp.stack([captured[site][rows, index] for site in teacher_sites], axis=1)  # [n, T, tokens, d]
    subspace = fit_trajectory_subspace(trajectories, jnp.asarray(reasoning_mask), explained_variance=args.explained_variance)
    rank = subspace.basis.shape[1]
    print(f"subspace rank {rank} explains {float(subspace.explained_variance_ratio.sum()):.3f} of the variance")
    random_subspace = TrajectorySubspace(subspace.mean, random_orthonormal_basis(jax.random.key(args.seed + 1),
                                                                                teacher.config.d_model, rank),
                                         jnp.zeros(rank))
    pairings = [pair_student_layer(s, S, T) for s in range(S)]
    real_chain_tokens = np.asarray(chains.attention_mask)

    def statistics_in(space: TrajectorySubspace):
        """Teacher statistics per paired layer and the student readout, both in ``space``."""
        means, covariances, coordinates = [], [], []
        for pairing in pairings:
            reasoning = interpolate_teacher_layers(pairing, [trajectories[:, layer] for layer in range(T)])
            mean, covariance = trajectory_statistics(project_on_subspace(reasoning, space), jnp.asarray(reasoning_mask))
            means.append(mean)
            covariances.append(covariance)
            on_chains = interpolate_teacher_layers(pairing, [captured[site] for site in teacher_sites])
            coordinates.append(project_on_subspace(on_chains[real_chain_tokens], space))
        states = jnp.stack([student_on_chains[site][real_chain_tokens] for site in student_sites])
        return jnp.stack(means), jnp.stack(covariances), fit_student_readout(states, jnp.stack(coordinates))

    # The student's training batch: direct-answer documents of the train sums.
    documents = encode(student, [write_arithmetic_document(a, b, False) for a, b in train_pairs])
    tokens, mask = jnp.asarray(documents.tokens), jnp.asarray(documents.attention_mask)
    seq = tokens.shape[1]
    point_mask = np.zeros(tokens.shape, bool)
    answer_position = np.zeros(len(train_pairs), np.int32)
    for row, (a, b) in enumerate(train_pairs):
        offset = seq - token_count(student.tokenizer, write_arithmetic_document(a, b, False))
        prompt_end = offset + token_count(student.tokenizer, arithmetic_prompt(a, b, False))
        point_mask[row, offset + token_count(student.tokenizer, HEADER):prompt_end] = True
        answer_position[row] = prompt_end - 1
    teacher_answer_logits = captured["logits"][rows[:, 0], index[np.arange(len(train_pairs)), reasoning_mask.sum(1) - 1]]

    def train(method: str):
        if args.lora_rank:
            paths = [p for s in range(S) for p in projection_kernel_paths(s, ["attn/o_proj", "mlp/down_proj"])]
            trainable = init_lora_adapters(jax.random.key(args.seed), student.params, paths, args.lora_rank)
        else:
            trainable = student.params

        def as_params(trainable):
            return merge_lora_adapters(student.params, trainable) if args.lora_rank else trainable

        optimizer = optax.adam(args.learning_rate)
        if method in ("no_transfer", "logit_distillation"):
            kl_weight = 1.0 if method == "logit_distillation" else 0.0

            def loss_fn(trainable, _):
                logits, _ = run_and_read_site(student.config, as_params(trainable), tokens, mask, student_sites[0])
                task = next_token_cross_entropy(logits, tokens, mask)
                answer_logits = logits[jnp.arange(len(train_pairs)), answer_position][:, None]
                kl = kl_to_teacher(answer_logits, teacher_answer_logits[:, None], jnp.ones((len(train_pairs), 1), bool))
                return task + kl_weight * kl, {"task": task, "kl": kl}

            trained, history = optimize_trainable(loss_fn, trainable, optimizer, lambda step: None, args.steps)
            return as_params(trained), history

        means, covariances, readout = statistics_in(subspace if method == "trajectory_distillation" else random_subspace)
        batch = TrajectoryDistillationBatch(tokens, mask, jnp.asarray(point_mask), means, covariances)
        probe = TrajectoryDistillationLoss(student_sites, statistic_weight=0.0)
        initial = float(trajectory_distillation_loss(student.config, student.params, readout, batch, probe)[1]["statistic"])
        spec = TrajectoryDistillationLoss(student_sites, statistic_weight=args.statistic_weight / initial)

        def loss_fn(trainable, batch):
            return trajectory_distillation_loss(student.config, as_params(trainable), readout, batch, spec)

        trained, history = optimize_trainable(loss_fn, trainable, optimizer, lambda step: batch, args.steps)
        return as_params(trained), {**history, "initial_statistic": np.asarray([initial])}

    results = {}
    for method in METHODS:
        params, history = train(method)
        results[method] = {**student_accuracy(params), "final_loss": {k: float(v[-1]) for k, v in history.items()},
                           "first_loss": {k: float(v[0]) for k, v in history.items()}}
        print(f"{method:24s} {results[method]}")

    payload = {
        "experiment": NAME, "teacher_model": teacher.name, "student_model": student.name, "args": vars(args),
        "n_sums": {name: len(pairs) for name, pairs in split.items()}, "subspace_rank": rank,
        "subspace_explained_variance": float(subspace.explained_variance_ratio.sum()),
        "teacher_chain_of_thought": teacher_cot, "teacher_direct": teacher_direct, "student_before": student_before,
        "after": results, "seconds": clock.seconds(),
    }
    print("wrote", write_json(result_name(NAME, args.tag), payload), "in", payload["seconds"], "s")
    plot(payload)


def plot(payload: dict):
    figure, axis = plt.subplots(figsize=(8, 4))
    names = ("student before", *METHODS)
    for offset, split in ((-0.2, "train"), (0.2, "test")):
        values = [payload["student_before"][split]] + [payload["after"][m][split] for m in METHODS]
        axis.bar(np.arange(len(names)) + offset, values, 0.4, label=f"{split} sums")
        axis.axhline(payload["teacher_chain_of_thought"][split], linestyle=":", color="tab:red" if split == "test" else "k",
                     label=f"teacher chain of thought ({split})")
    axis.set_xticks(np.arange(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    axis.set_ylabel("direct-answer accuracy")
    axis.set_title(f"Trajectory distillation: {payload['teacher_model']} (CoT) → {payload['student_model']} (direct), "
                   f"rank {payload['subspace_rank']}", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"{result_name(NAME, payload['args']['tag'])}.png", dpi=120)


if __name__ == "__main__":
    main()
