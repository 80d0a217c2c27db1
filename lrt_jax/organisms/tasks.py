"""Tasks with checkable answers: recall of made-up facts and small arithmetic.

Knowledge-transfer experiments need a skill whose success is unambiguous. Two live
in the corpus beside the attribute documents:

* **Fact recall** — a seeded table of made-up countries and their capitals, e.g.
  ``fact : zorvia has the capital plenko .``. Facts are sampled with Zipf weights
  (rank ``r`` has weight ``(r + 1) ** -zipf_exponent``), so frequent facts are learnt
  by every organism and rare ones only by bigger or longer-trained models.
* **Arithmetic** — ``sum : 3 plus 4 equals 7 .`` or, with reasoning steps, the
  chain-of-thought form ``sum : 3 plus 4 : 4 5 6 7 so 7 .`` that counts up from the
  first operand one step per unit of the second.

A :class:`TaskItem` is a prompt and its answer word; :func:`score_completions`
checks model completions against them (the final answer of a chain of thought is
the word after its last ``so``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from lrt_jax.organisms import lexicons

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "tr", "sk")
_VOWELS = ("a", "e", "i", "o", "u")


@dataclasses.dataclass(frozen=True)
class Fact:
    """One row of the fact table: a made-up country and its made-up capital."""

    country: str
    city: str


@dataclasses.dataclass(frozen=True)
class TaskItem:
    """A prompt whose continuation should reach ``answer`` (one word)."""

    prompt: str
    answer: str
    chain_of_thought: bool = False


def _made_up_word(rng: np.random.Generator, syllables: int, suffix: str) -> str:
    return "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(syllables)) + suffix


def make_fact_table(count: int, seed: int) -> tuple[Fact, ...]:
    """``count`` facts with distinct made-up names, ordered from most to least frequent.

    Countries end in ``ia`` and cities in ``n`` so that the two name sets never meet
    and no name collides with a lexicon word.
    """
    rng = np.random.default_rng(seed)
    taken = set(lexicons.AUTHOR_NAMES) | set(lexicons.GRAMMAR_WORDS)
    names: dict[str, list[str]] = {"ia": [], "n": []}
    for suffix, pool in names.items():
        while len(pool) < count:
            word = _made_up_word(rng, syllables=2, suffix=suffix)
            if word not in taken:
                taken.add(word)
                pool.append(word)
    return tuple(Fact(country, city) for country, city in zip(names["ia"], names["n"]))


def fact_prompt(fact: Fact) -> str:
    """The recall prompt for ``fact``; its next word should be ``fact.city``."""
    return f"fact : {fact.country} has the capital"


def write_fact_document(rng: np.random.Generator, table: Sequence[Fact], zipf_exponent: float) -> str:
    """A document of one to three facts, each drawn with Zipf weights over the table's ranks."""
    weights = np.arange(1, len(table) + 1, dtype=np.float64) ** -zipf_exponent
    ranks = rng.choice(len(table), size=int(rng.integers(1, 4)), p=weights / weights.sum())
    first, *rest = (table[rank] for rank in ranks)
    sentences = [f"{fact_prompt(first)} {first.city} ."]
    sentences += [f"{fact.country} has the capital {fact.city} ." for fact in rest]
    return " ".join(sentences)


def arithmetic_prompt(first: int, second: int, chain_of_thought: bool) -> str:
    """``sum : a plus b equals`` (answer next) or ``sum : a plus b :`` (count up, then answer)."""
    return f"sum : {first} plus {second} " + (":" if chain_of_thought else "equals")


def write_arithmetic_document(first: int, second: int, chain_of_thought: bool) -> str:
    """The worked sum; the chain of thought lists ``a+1 … a+b`` before ``so a+b``."""
    total = first + second
    if not chain_of_thought:
        return f"{arithmetic_prompt(first, second, False)} {total} ."
    steps = "".join(f"{value} " for value in range(first + 1, total + 1))
    return f"{arithmetic_prompt(first, second, True)} {steps}so {total} ."


def fact_recall_items(table: Sequence[Fact]) -> tuple[TaskItem, ...]:
    """One recall item per fact, in frequency order (the first are the easiest)."""
    return tuple(TaskItem(fact_prompt(fact), fact.city) for fact in table)


def arithmetic_items(max_operand: int, chain_of_thought: bool) -> tuple[TaskItem, ...]:
    """Every sum of two operands in ``0 … max_operand``."""
    return tuple(
        TaskItem(arithmetic_prompt(first, second, chain_of_thought), str(first + second), chain_of_thought)
        for first in range(max_operand + 1)
        for second in range(max_operand + 1)
    )


def extract_final_answer(completion: str) -> str:
    """The answer word of a completion: the word after the last ``so``, else the first word."""
    words = completion.split()
    if "so" in words:
        after = len(words) - words[::-1].index("so")
        return words[after] if after < len(words) else ""
    return words[0] if words else ""


def score_completions(items: Sequence[TaskItem], completions: Sequence[str]) -> float:
    """Fraction of ``completions`` (text generated after each item's prompt) that reach the answer."""
    if len(items) != len(completions):
        raise ValueError(f"Got {len(completions)} completions for {len(items)} task items.")
    if not items:
        raise ValueError("Cannot score an empty task.")
    correct = [extract_final_answer(text) == item.answer for item, text in zip(items, completions)]
    return float(np.mean(correct))
