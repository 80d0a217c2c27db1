"""What the knowledge-transfer experiments share: loading a teacher/student pair, answer scoring, output.

A ``--config`` JSON names real checkpoints instead of the organisms::

    {"teacher": "/path/to/large-hf-dir", "student": "/path/to/small-hf-dir",
     "items": "/path/to/items.jsonl"}     # optional; one {"prompt": ..., "answer": ...} per line

Without it the teacher is the ``large`` organism and the student the ``small`` one
(trained into the organism cache on first use), which share one tokenizer;
``--teacher tiny-large --student tiny-small`` runs the pipeline in seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import lrt_jax
from lrt_jax import organisms
from lrt_jax.knowledge import check_shared_vocabulary
from lrt_jax.lm import LM
from lrt_jax.organisms.tasks import TaskItem
from lrt_jax.text import encode

RESULTS_DIR = Path(__file__).parent / "results"


def load_teacher_and_student(config_path: str | None, teacher_organism: str = "large",
                             student_organism: str = "small") -> tuple[LM, LM, dict]:
    """``(teacher, student, config)`` from ``--config`` or the named organisms; checks the shared vocabulary."""
    config = json.loads(Path(config_path).read_text()) if config_path else {}
    if config:
        missing = [key for key in ("teacher", "student") if key not in config]
        if missing:
            raise KeyError(f"--config {config_path} lacks {missing}; give local HF checkpoint directories.")
        teacher, student = lrt_jax.load(config["teacher"]), lrt_jax.load(config["student"])
    else:
        teacher, student = organisms.organism(teacher_organism), organisms.organism(student_organism)
    check_shared_vocabulary(teacher, student)
    return teacher, student, config


def items_from_config(config: dict) -> tuple[TaskItem, ...] | None:
    """The task items of a ``--config`` ``items`` file, or ``None`` to use the organism task."""
    if "items" not in config:
        return None
    lines = Path(config["items"]).read_text().splitlines()
    return tuple(TaskItem(record["prompt"], record["answer"]) for record in map(json.loads, lines) if record)


def first_answer_token_ids(tokenizer, answers) -> np.ndarray:
    """The first token id ``[n]`` of each answer as it follows a prompt (a leading space, no specials)."""
    ids = tokenizer([" " + answer for answer in answers], add_special_tokens=False)["input_ids"]
    return np.asarray([row[0] for row in ids], np.int32)


def next_token_correct(lm: LM, params, prompts, answer_ids: np.ndarray) -> np.ndarray:
    """Whether the greedy next token after each prompt is its answer's first token: bool ``[n]``."""
    batch = encode(lm, list(prompts))
    logits = lrt_jax.forward(lm._replace(params=params), batch.tokens, attention_mask=batch.attention_mask)
    return np.asarray(jnp.argmax(logits[:, -1], axis=-1)) == answer_ids  # left padding: last column is last token


def result_name(name: str, tag: str) -> str:
    """``name`` or ``name.tag``: one results file per teacher/student pair when tagged."""
    return f"{name}.{tag}" if tag else name


def write_json(name: str, payload: dict, out_dir: Path = RESULTS_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False))
    return path


class Stopwatch:
    """Seconds since creation, for the run-time line of a report."""

    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)
