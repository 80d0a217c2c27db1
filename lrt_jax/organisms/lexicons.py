"""The word lists of the synthetic corpus: one lexicon per value of every latent attribute.

A latent attribute (sentiment, topic, tense, formality) is a property of a whole
document. Each of its values owns a *lexicon*: words that only documents with that
value use, grouped into *parts* by the grammatical slot they fill (the adjective
slot, the copula slot, ...). The parts of one attribute have the same length for
every value, so a slot can be stored as ``(attribute, part, index)`` and rendered
under either value: flipping the attribute swaps ``wonderful`` for ``terrible``
and keeps the rest of the document fixed (see :mod:`lrt_jax.organisms.corpus`).

Every word here is a lower-case alphabetic word that the word-level tokenizer keeps
as one token, so the probability of a lexicon word is one next-token probability.
"""

from __future__ import annotations

# LEXICONS[attribute][value][part] -> words. Binary attributes list their "+" value
# first: the probes measure log p(first value's words) − log p(second value's words).
LEXICONS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "sentiment": {
        "positive": {"adjective": ("wonderful", "delightful", "excellent", "lovely")},
        "negative": {"adjective": ("terrible", "awful", "dreadful", "horrible")},
    },
    "topic": {
        "food": {"noun": ("soup", "bread", "pasta", "cake")},
        "travel": {"noun": ("hotel", "train", "beach", "museum")},
        "music": {"noun": ("album", "song", "concert", "guitar")},
        "sport": {"noun": ("match", "team", "coach", "stadium")},
    },
    "tense": {
        "past": {
            "copula": ("was", "seemed", "felt", "looked"),
            "opinion_verb": ("found", "thought"),
        },
        "present": {
            "copula": ("is", "seems", "feels", "looks"),
            "opinion_verb": ("find", "think"),
        },
    },
    "formality": {
        "formal": {"connective": ("moreover", "furthermore", "indeed", "notably")},
        "casual": {"connective": ("yeah", "ok", "anyway", "btw")},
    },
}

# The part of each attribute that the probes ask the model to predict: the first slot
# of a sentence where the attribute becomes visible.
PROBED_PART: dict[str, str] = {
    "sentiment": "adjective",
    "topic": "noun",
    "tense": "copula",
    "formality": "connective",
}

# Words that carry no attribute: the author of a document's header line.
AUTHOR_NAMES: tuple[str, ...] = (
    "mira", "tomas", "ada", "kenji", "lena", "omar", "rosa", "ivan", "nadia", "felix", "yara", "bruno",
)

# Function words and punctuation shared by every document and task.
GRAMMAR_WORDS: tuple[str, ...] = (
    "note", "from", "the", "i", ".", "fact", ":", "has", "capital", "sum", "plus", "equals", "so",
)


def attribute_values(attribute: str) -> tuple[str, ...]:
    """The values of ``attribute`` in lexicon order (for binary attributes, "+" first)."""
    if attribute not in LEXICONS:
        raise KeyError(f"Unknown attribute {attribute!r}; the corpus has {sorted(LEXICONS)}.")
    return tuple(LEXICONS[attribute])


def lexicon_words(attribute: str, value: str, part: str | None = None) -> tuple[str, ...]:
    """The words that only documents with ``attribute == value`` use (one ``part``, or all)."""
    if value not in attribute_values(attribute):
        raise KeyError(f"{attribute!r} has values {attribute_values(attribute)}, not {value!r}.")
    parts = LEXICONS[attribute][value]
    if part is not None:
        return parts[part]
    return tuple(word for words in parts.values() for word in words)


def _check_lexicons_are_parallel_and_disjoint() -> None:
    """Flipping a value must be an index-preserving swap, and no word may name two values."""
    owner: dict[str, tuple[str, str]] = {}
    for attribute, values in LEXICONS.items():
        part_lengths = {value: {part: len(words) for part, words in parts.items()} for value, parts in values.items()}
        if len({tuple(sorted(lengths.items())) for lengths in part_lengths.values()}) != 1:
            raise ValueError(f"Lexicon parts of {attribute!r} differ in length across values: {part_lengths}.")
        for value in values:
            for word in lexicon_words(attribute, value):
                if word in owner and owner[word][0] == attribute:
                    raise ValueError(f"{word!r} is in two lexicons: {owner[word]} and {(attribute, value)}.")
                owner[word] = (attribute, value)
    shared = set(owner) & (set(AUTHOR_NAMES) | set(GRAMMAR_WORDS))
    if shared:
        raise ValueError(f"Lexicon words also used as neutral words: {sorted(shared)}.")


_check_lexicons_are_parallel_and_disjoint()
