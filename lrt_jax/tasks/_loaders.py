"""Loaders for the evaluation task files, each returning a tuple of frozen records.

Every loader takes the path of a file in its upstream format (CAA A/B JSON
arrays, Anthropic persona JSON Lines, TruthfulQA ``mc_task.json``, GSM8K JSON
Lines; each loader's docstring and record class describe the fields) and
validates each record; a malformed record raises
:class:`~lrt_jax.tasks.TaskFormatError` naming the file and the 1-based record
number.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from lrt_jax.tasks._reading import TaskFormatError, read_json_array, read_json_lines, require_field

_AB_ANSWER = re.compile(r"\(([A-Z])\)")
# A choice marker of an A/B question, "(A)" or "( A )", searched after the last
# "Choices" heading when there is one (some CAA sycophancy items have none).
_AB_CHOICE = re.compile(r"\(\s*([A-Z])\s*\)")
_GSM8K_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_GSM8K_MARKER = "####"


@dataclasses.dataclass(frozen=True)
class ABItem:
    """A CAA A/B behaviour question.

    Attributes:
      question: the question text including its ``Choices:`` list.
      answer_matching: letter a model with the behaviour picks, e.g. ``"A"``
        (upstream ``"(A)"`` with the parentheses removed).
      answer_not_matching: the other letter.
    """

    question: str
    answer_matching: str
    answer_not_matching: str


@dataclasses.dataclass(frozen=True)
class PersonaItem:
    """An Anthropic persona yes/no statement.

    Attributes:
      question: ``'Is the following statement something you would say?\\n"…"'``.
      statement: the statement alone.
      answer_matching: ``"Yes"`` or ``"No"`` (upstream has a leading space, which is a
        tokenization choice and is left to the prompt format).
      answer_not_matching: the other answer.
      label_confidence: the upstream label model's confidence in the label.
    """

    question: str
    statement: str
    answer_matching: str
    answer_not_matching: str
    label_confidence: float


@dataclasses.dataclass(frozen=True)
class MCItem:
    """A multiple-choice question with 0/1 labels.

    Attributes:
      question: the question.
      choices: the answer options in file order.
      labels: ``1`` for a true option, ``0`` for a false one, aligned with ``choices``.
        MC1 has exactly one 1 (scored by argmax accuracy); MC2 has several
        (scored by the normalised probability mass on the true options).
    """

    question: str
    choices: tuple[str, ...]
    labels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class GSM8KItem:
    """A GSM8K word problem.

    Attributes:
      question: the problem.
      solution: the worked solution before the ``####`` line (with ``<<…>>`` annotations).
      answer: the final number as text, commas removed, e.g. ``"1200"``; see
        :func:`extract_final_answer`.
    """

    question: str
    solution: str
    answer: str


def load_caa_ab(path, *, limit: int | None = None) -> tuple[ABItem, ...]:
    """Load a CAA A/B file (``generate_dataset.json`` or ``test_dataset_ab.json``).

    Both answer letters must be among the question's choices (``(A) …`` markers), and
    the file must hold at least one record.

    Args:
      path: the file.
      limit: keep only the first ``limit`` records (all are validated); ``None`` keeps all.

    Raises:
      TaskFormatError: (a ``ValueError``) for an empty file or a malformed record.
      ValueError: for a negative or non-integer ``limit``.
    """
    _check_limit(limit)
    items = []
    for number, record in read_json_array(path):
        letters = []
        for field in ("answer_matching_behavior", "answer_not_matching_behavior"):
            answer = require_field(path, number, record, field, str)
            match = _AB_ANSWER.fullmatch(answer.strip())
            if match is None:
                raise TaskFormatError(path, number, f"field {field!r} should be a letter like '(A)', found {answer!r}")
            letters.append(match.group(1))
        if letters[0] == letters[1]:
            raise TaskFormatError(path, number, f"matching and non-matching answers are both ({letters[0]})")
        question = require_field(path, number, record, "question", str)
        choices = _AB_CHOICE.findall(question.rpartition("Choices")[2] or question)
        missing = [letter for letter in letters if letter not in choices]
        if missing:
            listed = ", ".join(f"({c})" for c in choices) or "none"
            raise TaskFormatError(
                path, number,
                f"answer letters {', '.join(f'({m})' for m in missing)} are not among the question's choices ({listed})",
            )
        items.append(ABItem(question, *letters))
    if not items:
        raise TaskFormatError(path, None, "the file holds no A/B records (an empty JSON array)")
    return _first(items, limit)


def load_persona(path, *, limit: int | None = None) -> tuple[PersonaItem, ...]:
    """Load an Anthropic persona ``<behaviour>.jsonl`` file (``limit``: as :func:`load_caa_ab`)."""
    _check_limit(limit)
    items = []
    for number, record in read_json_lines(path):
        answers = [
            require_field(path, number, record, field, str).strip()
            for field in ("answer_matching_behavior", "answer_not_matching_behavior")
        ]
        if sorted(answers) != ["No", "Yes"]:
            raise TaskFormatError(path, number, f"answers should be one ' Yes' and one ' No', found {answers!r}")
        items.append(
            PersonaItem(
                question=require_field(path, number, record, "question", str),
                statement=require_field(path, number, record, "statement", str),
                answer_matching=answers[0],
                answer_not_matching=answers[1],
                label_confidence=float(require_field(path, number, record, "label_confidence", (int, float))),
            )
        )
    return _first(items, limit)


def load_truthfulqa_mc(path, *, targets: Literal["mc1", "mc2"], limit: int | None = None) -> tuple[MCItem, ...]:
    """Load TruthfulQA ``mc_task.json`` (current or ``v1/``) as MC1 or MC2 items.

    Both target sets are validated whichever is returned, so a damaged file is
    caught on any load. ``mc0_targets`` (current file only) is ignored.

    Args:
      path: the ``mc_task.json`` file.
      targets: ``"mc1"`` (one true answer, listed first) or ``"mc2"`` (several).
      limit: as :func:`load_caa_ab`.
    """
    if targets not in ("mc1", "mc2"):
        raise ValueError(f'targets must be "mc1" or "mc2", got {targets!r}.')
    _check_limit(limit)
    items = []
    for number, record in read_json_array(path):
        question = require_field(path, number, record, "question", str)
        parsed = {name: _parse_targets(path, number, record, f"{name}_targets") for name in ("mc1", "mc2")}
        n_correct = sum(parsed["mc1"][1])
        if n_correct != 1:
            raise TaskFormatError(path, number, f"mc1_targets should mark exactly one answer 1, found {n_correct}")
        if len(set(parsed["mc2"][1])) != 2:
            raise TaskFormatError(path, number, "mc2_targets needs at least one true (1) and one false (0) answer")
        items.append(MCItem(question, *parsed[targets]))
    return _first(items, limit)


def _parse_targets(path, number, record, field) -> tuple[tuple[str, ...], tuple[int, ...]]:
    answers = require_field(path, number, record, field, dict)
    if not answers or any(isinstance(v, bool) or v not in (0, 1) for v in answers.values()):
        raise TaskFormatError(path, number, f"field {field!r} should map answers to 0 or 1, found {answers!r}")
    return tuple(answers), tuple(int(v) for v in answers.values())


def extract_final_answer(text: str) -> str | None:
    """The number after the last ``####`` in ``text``, commas removed; ``None`` when absent.

    Used for the GSM8K references and for model generations alike, so both are
    normalised the same way before comparison.

    Example:
      >>> extract_final_answer("… she makes $18.\\n#### 1,018")
      '1018'
    """
    _, marker, tail = text.rpartition(_GSM8K_MARKER)
    if not marker:
        return None
    match = _GSM8K_NUMBER.match(tail.strip().replace(",", ""))
    return match.group(0) if match else None


def load_gsm8k(path, *, limit: int | None = None) -> tuple[GSM8KItem, ...]:
    """Load a GSM8K ``.jsonl`` file (``test.jsonl``, ``train.jsonl``; ``limit``: as :func:`load_caa_ab`)."""
    _check_limit(limit)
    items = []
    for number, record in read_json_lines(path):
        question = require_field(path, number, record, "question", str)
        solution = require_field(path, number, record, "answer", str)
        answer = extract_final_answer(solution)
        if answer is None:
            raise TaskFormatError(path, number, f"the 'answer' field has no '{_GSM8K_MARKER} <number>' final line")
        items.append(GSM8KItem(question, solution.rpartition(_GSM8K_MARKER)[0].strip(), answer))
    return _first(items, limit)


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int (the number of records to keep), got {limit!r}.")


def _first(items, limit):
    return tuple(items if limit is None else items[:limit])
