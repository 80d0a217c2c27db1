"""Translate and substitute (issue 8, method 1) between every ordered pair of organisms.

For each teacher → student pair, a ridge map (α by GCV) is fitted from the teacher's
``layers.{t}.resid_post`` to the student's ``layers.{s}.resid_post`` on the aligned
words of the task domain's texts (each prompt followed by its answer; 25% of the texts
held out for R²). The student layer sits at ``--student-depth`` of the student's depth
and the teacher layer at the same relative depth (:mod:`lrt_jax.knowledge.layer_pairing`,
rounded to the nearest layer). The student then answers the task's prompts (greedy,
KV-cached generation) under each condition:

* ``student`` — no transfer (the baseline the correction rates are measured from);
* ``replace`` — the translated teacher state replaces the student's at every prompt word;
* ``replace_last`` — the same at the prompt's last word only;
* ``mix`` — ``(1 − β)·h + β·f(x)`` at every prompt word;
* ``random_map`` — ``replace`` through a Gaussian map with the fitted map's Frobenius norm and bias;
* ``logit_mix`` — plain logit distillation without training: at every generated token the
  student's and the teacher's next-token log-probabilities are mixed,
  ``(1 − β)·log p_student + β·log p_teacher`` (a product of experts; needs one vocabulary);
* ``teacher`` — the teacher's own answers (the ceiling the transfer aims at).

Reported per pair: held-out R² of the map, accuracies, and for every transfer condition
the share of the student's wrong answers made right and of its right answers made wrong;
across pairs, the correlation of R² with the ``replace`` correction rate. Output:
``experiments/results/translate_substitute.{json,png}``.

Organisms (default): ``small`` (llama), ``large`` (llama, 3× wider), ``moe`` (mixtral) and
``gemma2``, all 12 ordered pairs, on direct arithmetic (``--task arithmetic``, the default:
there the stronger organisms beat the weakest by 0.4) or fact recall (``--task facts``). They share one word-level tokenizer, so the word alignment is
one-to-one here; the alignment itself is what lets ``--config`` pair real checkpoints
with different tokenizers::

    {"pairs": [{"teacher": "/ckpt/llama-3b", "student": "/ckpt/qwen-0.5b",
                "teacher_layer": 14, "student_layer": 12}],
     "task_items": "/data/facts.jsonl",      # one {"prompt": ..., "answer": ...} per line
     "fit_texts": "/data/domain.txt",        # optional: one text per line; default prompt + answer
     "max_new_tokens": 8, "mix_beta": 0.5, "logit_beta": 0.5}

Run: ``python experiments/translate_substitute.py [--task facts] [--config pairs.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax import loading
from lrt_jax import forward
from lrt_jax import generate
from lrt_jax.knowledge import (
    align_words,
    answers_correct,
    correction_rates,
    correlate_across_pairs,
    fit_site_translation,
    generate_with_substitution,
    random_translation_like,
)
from lrt_jax.knowledge.layer_pairing import pair_student_layer
from lrt_jax.knowledge.semantic_bases import check_shared_vocabulary
from lrt_jax.lm import LM
from lrt_jax.organisms import (
    RECIPES,
    TaskItem,
    arithmetic_items,
    fact_recall_items,
    make_fact_table,
    organism,
)
from lrt_jax.text import decode, encode

RESULTS = Path(__file__).parent / "results" / "translate_substitute"
ORGANISMS = ("small", "large", "moe", "gemma2")
TRANSFER_CONDITIONS = ("replace", "replace_last", "mix", "random_map", "logit_mix")


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """One teacher → student pair: organism names or local HF checkpoint paths, and the layers to connect."""

    teacher: str
    student: str
    teacher_layer: int | None = None  # None: the relative-depth partner of student_layer
    student_layer: int | None = None  # None: --student-depth of the student's layers


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; ``--config`` reads it from JSON (see the module docstring)."""

    pairs: tuple[PairConfig, ...]
    task_items: tuple[TaskItem, ...]
    fit_texts: tuple[str, ...]
    max_new_tokens: int = 2
    student_depth: float = 0.5
    mix_beta: float = 0.5
    logit_beta: float = 0.5
    heldout_fraction: float = 0.25
    seed: int = 0

    @classmethod
    def from_json(cls, path: str, student_depth: float) -> ExperimentConfig:
        raw = json.loads(Path(path).read_text())
        items = tuple(TaskItem(**json.loads(line)) for line in Path(raw["task_items"]).read_text().splitlines() if line)
        fit_texts = (tuple(line for line in Path(raw["fit_texts"]).read_text().splitlines() if line)
                     if raw.get("fit_texts") else texts_with_answers(items))
        options = {key: raw[key] for key in ("max_new_tokens", "mix_beta", "logit_beta", "heldout_fraction", "seed")
                   if key in raw}
        return cls(tuple(PairConfig(**pair) for pair in raw["pairs"]), items, fit_texts,
                   student_depth=student_depth, **options)


def texts_with_answers(items) -> tuple[str, ...]:
    """The domain texts a map is fitted on: each prompt followed by its answer and a full stop."""
    return tuple(f"{item.prompt} {item.answer} ." for item in items)


def organism_task(task: str) -> tuple[TaskItem, ...]:
    if task == "facts":
        corpus = RECIPES["small"].corpus
        return fact_recall_items(make_fact_table(corpus.fact_count, corpus.fact_table_seed))
    if task == "arithmetic":
        return arithmetic_items(RECIPES["small"].corpus.max_operand, chain_of_thought=False)
    raise ValueError(f"--task must be 'facts' or 'arithmetic'; got {task!r}.")


def load_model(name_or_path: str) -> LM:
    """A local HF checkpoint directory, else a cached organism of that recipe name."""
    return loading.load(name_or_path) if Path(name_or_path).is_dir() else organism(name_or_path, progress=False)


def resolve_layers(pair: PairConfig, teacher: LM, student: LM, student_depth: float) -> tuple[int, int]:
    n_student, n_teacher = student.config.n_layers, teacher.config.n_layers
    student_layer = pair.student_layer if pair.student_layer is not None else round(student_depth * (n_student - 1))
    if pair.teacher_layer is not None:
        return pair.teacher_layer, student_layer
    return pair_student_layer(student_layer, n_student, n_teacher).nearest_teacher_layer, student_layer


def stop_tokens_of(lm: LM) -> tuple[int, ...]:
    return () if lm.tokenizer.eos_token_id is None else (int(lm.tokenizer.eos_token_id),)


def plain_completions(lm: LM, prompts, max_new_tokens: int) -> list[str]:
    batch = encode(lm, prompts)
    out = generate(lm, batch.tokens, attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens,
                   stop_tokens=stop_tokens_of(lm))
    return decode(lm, out.tokens, out.generated_mask)


def logit_mix_completions(student: LM, teacher: LM, prompts, beta: float, max_new_tokens: int) -> list[str]:
    """Greedy tokens of ``(1 − β)·log p_student + β·log p_teacher``, both models reading the same ids."""
    check_shared_vocabulary(teacher, student)
    batch = encode(student, prompts)
    tokens, mask = batch.tokens, batch.attention_mask
    for _ in range(max_new_tokens):
        student_logp = jax.nn.log_softmax(forward(student, tokens, attention_mask=mask)[:, -1], axis=-1)
        teacher_logp = jax.nn.log_softmax(forward(teacher, tokens, attention_mask=mask)[:, -1], axis=-1)
        next_token = np.asarray(jnp.argmax((1 - beta) * student_logp + beta * teacher_logp, axis=-1), np.int32)
        tokens = np.concatenate([tokens, next_token[:, None]], axis=1)
        mask = np.concatenate([mask, np.ones_like(mask[:, :1])], axis=1)
    new = tokens[:, batch.tokens.shape[1]:]
    stops = np.isin(new, stop_tokens_of(student))
    before_stop = np.cumsum(stops, axis=1) == 0
    return decode(student, new, before_stop)


def run_pair(pair: PairConfig, config: ExperimentConfig, cached_answers: dict) -> dict:
    started = time.perf_counter()
    teacher, student = load_model(pair.teacher), load_model(pair.student)
    teacher_layer, student_layer = resolve_layers(pair, teacher, student, config.student_depth)
    items = config.task_items
    prompts = [item.prompt for item in items]
    alignment = align_words(list(config.fit_texts), teacher.tokenizer, student.tokenizer)
    translation = fit_site_translation(teacher, student, alignment, teacher_site=f"layers.{teacher_layer}.resid_post",
                                       student_site=f"layers.{student_layer}.resid_post",
                                       heldout_fraction=config.heldout_fraction, seed=config.seed)
    for name, lm in ((pair.teacher, teacher), (pair.student, student)):
        if name not in cached_answers:
            cached_answers[name] = answers_correct(items, plain_completions(lm, prompts, config.max_new_tokens))
    before = cached_answers[pair.student]
    substitute = {"max_new_tokens": config.max_new_tokens, "stop_tokens": stop_tokens_of(student)}
    random_map = random_translation_like(translation, seed=config.seed)
    completions = {
        "replace": generate_with_substitution(student, teacher, prompts, [translation], **substitute),
        "replace_last": generate_with_substitution(student, teacher, prompts, [translation], words="last",
                                                   **substitute),
        "mix": generate_with_substitution(student, teacher, prompts, [translation], beta=config.mix_beta,
                                          **substitute),
        "random_map": generate_with_substitution(student, teacher, prompts, [random_map], **substitute),
        "logit_mix": logit_mix_completions(student, teacher, prompts, config.logit_beta, config.max_new_tokens),
    }
    conditions = {name: correction_rates(before, answers_correct(items, texts))._asdict()
                  for name, texts in completions.items()}
    return {
        "teacher": pair.teacher, "student": pair.student,
        "teacher_site": translation.teacher_site, "student_site": translation.student_site,
        "r2_fit": translation.r2_fit, "r2_heldout": translation.r2_heldout,
        "ridge_alpha": float(np.mean(translation.state.alpha)),
        "n_fit_words": translation.n_fit_words, "n_heldout_words": translation.n_heldout_words,
        "accuracy_student": float(before.mean()), "accuracy_teacher": float(cached_answers[pair.teacher].mean()),
        "teacher_beats_student": bool(cached_answers[pair.teacher].mean() > before.mean()),
        "conditions": conditions,
        "examples": {name: texts[:3] for name, texts in completions.items()},
        "seconds": time.perf_counter() - started,
    }


def summarise(records: list[dict]) -> dict:
    """Correlation across pairs of held-out R² with the replace condition's correction rates."""
    def correlation(rows, measure):
        result = correlate_across_pairs([row["r2_heldout"] for row in rows],
                                        [row["conditions"]["replace"][measure] for row in rows])
        return result._asdict()

    def mean(rows, condition):
        return float(np.mean([row["conditions"][condition]["accuracy_after"] for row in rows])) if rows else None

    beating = [row for row in records if row["teacher_beats_student"]]
    return {
        "r2_vs_wrong_to_right_all_pairs": correlation(records, "wrong_to_right"),
        "r2_vs_net_gain_all_pairs": correlation(records, "net_gain"),
        "r2_vs_wrong_to_right_teacher_better_pairs": correlation(beating, "wrong_to_right"),
        "mean_accuracy_student": float(np.mean([row["accuracy_student"] for row in records])),
        "mean_accuracy_teacher": float(np.mean([row["accuracy_teacher"] for row in records])),
        "mean_accuracy_after": {name: mean(records, name) for name in TRANSFER_CONDITIONS},
        "mean_accuracy_after_teacher_better_pairs": {name: mean(beating, name) for name in TRANSFER_CONDITIONS},
        "n_pairs": len(records), "n_teacher_better_pairs": len(beating),
    }


def without_nans(value):
    """``value`` with every NaN float replaced by ``None``, so the report is strict JSON."""
    if isinstance(value, dict):
        return {key: without_nans(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nans(item) for item in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def plot(records: list[dict], summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row['teacher']}→{row['student']}" for row in records]
    bars = {"student": [row["accuracy_student"] for row in records]}
    bars.update({name: [row["conditions"][name]["accuracy_after"] for row in records] for name in TRANSFER_CONDITIONS})
    bars["teacher"] = [row["accuracy_teacher"] for row in records]
    figure, (left, right) = plt.subplots(1, 2, figsize=(16, 5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(bars)
    for index, (name, values) in enumerate(bars.items()):
        left.bar(np.arange(len(records)) + index * width, values, width, label=name)
    left.set_xticks(np.arange(len(records)) + 0.4 - width / 2, labels, rotation=45, ha="right")
    left.set_ylabel("accuracy")
    left.set_title(title)
    left.legend(ncol=4, fontsize=8)
    r2 = [row["r2_heldout"] for row in records]
    fixed = [row["conditions"]["replace"]["wrong_to_right"] for row in records]
    broken = [row["conditions"]["replace"]["right_to_wrong"] for row in records]
    right.scatter(r2, fixed, label="wrong → right")
    right.scatter(r2, broken, marker="x", label="right → wrong")
    correlation = summary["r2_vs_wrong_to_right_all_pairs"]
    right.set_title(f"replace: Pearson r = {correlation['pearson_r']:.2f} (p = {correlation['pearson_p']:.2g})")
    right.set_xlabel("held-out R² of the map")
    right.set_ylabel("share of the student's answers")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="arithmetic", choices=("facts", "arithmetic"))
    parser.add_argument("--organisms", default=",".join(ORGANISMS),
                        help="comma-separated organism recipes to cross (e.g. tiny-small,tiny-moe for a smoke test)")
    parser.add_argument("--config", help="JSON config for real checkpoints (see the module docstring)")
    parser.add_argument("--student-depth", type=float, default=0.5,
                        help="relative depth of the student layer (0 = first, 1 = last)")
    parser.add_argument("--out", default=str(RESULTS), help="output path without suffix")
    args = parser.parse_args()
    if args.config:
        config = ExperimentConfig.from_json(args.config, args.student_depth)
        title = f"translate and substitute: {Path(args.config).name}"
    else:
        items = organism_task(args.task)
        pairs = tuple(PairConfig(t, s) for t, s in itertools.permutations(args.organisms.split(","), 2))
        config = ExperimentConfig(pairs, items, texts_with_answers(items), student_depth=args.student_depth)
        title = f"translate and substitute: organisms, {args.task}"

    started = time.perf_counter()
    cached_answers: dict = {}
    records = []
    for pair in config.pairs:
        record = run_pair(pair, config, cached_answers)
        records.append(record)
        replace = record["conditions"]["replace"]
        print(f"{pair.teacher:>7} → {pair.student:<7} R²={record['r2_heldout']:.3f} "
              f"acc student={record['accuracy_student']:.2f} teacher={record['accuracy_teacher']:.2f} "
              f"replace={replace['accuracy_after']:.2f} (w→r {replace['wrong_to_right']:.2f}, "
              f"r→w {replace['right_to_wrong']:.2f}) mix={record['conditions']['mix']['accuracy_after']:.2f} "
              f"random={record['conditions']['random_map']['accuracy_after']:.2f} "
              f"logit_mix={record['conditions']['logit_mix']['accuracy_after']:.2f} [{record['seconds']:.0f}s]",
              flush=True)
    summary = summarise(records)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in dataclasses.asdict(config).items() if key not in ("task_items", "fit_texts")}
    report = {"task": args.config or args.task, "n_items": len(config.task_items), "settings": settings,
              "summary": summary, "pairs": records, "seconds": time.perf_counter() - started}
    out.with_suffix(".json").write_text(json.dumps(without_nans(report), indent=1))
    plot(records, summary, out.with_suffix(".png"), title)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out.with_suffix('.json')} and .png in {report['seconds']:.0f}s")


if __name__ == "__main__":
    main()
