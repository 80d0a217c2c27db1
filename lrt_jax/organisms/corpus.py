"""A seeded probabilistic grammar of short documents whose latent attributes are known.

An *attribute document* has a neutral header and two to four body sentences::

    note from mira . moreover the soup was wonderful . indeed i found the cake lovely .
    └── header ────┘ └─ formality, topic, tense, sentiment ─┘

Every body sentence fills its slots from the lexicons of the document's values
(:mod:`lrt_jax.organisms.lexicons`): the connective shows formality, the noun the
topic, the copula or opinion verb the tense, the adjective the sentiment. The values
are drawn once per document and never change inside it, so after the first body
sentence each attribute is predictable, and a model that predicts well must carry
all four in its residual stream — a linear trace that steering vectors can find.

A document is drawn as a *skeleton* (literal words and :class:`Slot` references
``(attribute, part, index)``) and then *rendered* under a labelling. Rendering the
same skeleton under two labellings gives a contrastive pair that differs only in
one attribute's words (see :mod:`lrt_jax.organisms.probes`).

Fact and arithmetic documents (:mod:`lrt_jax.organisms.tasks`) are mixed in at
configurable fractions; they carry no attribute labels. Text is lower case with
every token separated by one space, so ``" ".join`` of the tokens is the text.
Everything is a pure function of the seed (a ``numpy.random.Generator``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal, Union

import numpy as np

from lrt_jax.organisms import lexicons, tasks

SentenceTemplate = Literal["copula", "opinion"]
DocumentKind = Literal["attribute", "fact", "arithmetic"]


@dataclasses.dataclass(frozen=True)
class Slot:
    """A word to take from ``LEXICONS[attribute][<document's value>][part][index]``."""

    attribute: str
    part: str
    index: int


Token = Union[str, Slot]
Sentence = tuple[Token, ...]
Skeleton = tuple[Sentence, ...]


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """How many documents of which kinds, and the seeds that fix them.

    ``fact_table_seed`` is separate from ``seed`` so that corpora of different sizes
    (and organisms trained on them) share one fact table and one vocabulary.
    """

    n_documents: int = 20_000
    seed: int = 0
    # Fact documents state facts of one table, the frequent ones more often (Zipf).
    fact_count: int = 48
    fact_table_seed: int = 0
    fact_zipf_exponent: float = 1.0
    fact_document_fraction: float = 0.08
    # Arithmetic documents, a share of them with a worked chain of thought.
    arithmetic_document_fraction: float = 0.07
    chain_of_thought_fraction: float = 0.5
    max_operand: int = 9
    # Attribute documents: the share of copula body sentences ("the soup was lovely")
    # against opinion ones ("i found the soup lovely"), and per-attribute value weights,
    # ``((attribute, (weight of each value in lexicon order)), ...)``; attributes not
    # named are uniform. The defaults draw the corpus every built-in organism learns
    # from; other values give a target a shifted training distribution (the LRT zoo).
    copula_fraction: float = 0.7
    value_weights: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def __post_init__(self):
        if not 0.0 <= self.copula_fraction <= 1.0:
            raise ValueError(f"copula_fraction={self.copula_fraction} must be in [0, 1].")
        for attribute, weights in self.value_weights:
            values = lexicons.attribute_values(attribute)
            if len(weights) != len(values) or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"value_weights for {attribute!r} must be {len(values)} non-negative weights "
                                 f"(for {values}) with a positive sum; got {tuple(weights)}.")

    def value_probabilities(self, attribute: str) -> np.ndarray | None:
        """Normalised weights of ``attribute``'s values, or None when they are uniform (the default)."""
        for name, weights in self.value_weights:
            if name == attribute:
                weights = np.asarray(weights, dtype=np.float64)
                return weights / weights.sum()
        return None


# Fields added to CorpusConfig after the first organisms were cached. A recipe leaves them
# out of its JSON while they hold their defaults, so the fingerprints of existing
# organisms (and their caches) do not change.
FIELDS_OMITTED_AT_DEFAULT = ("copula_fraction", "value_weights")


@dataclasses.dataclass(frozen=True)
class Document:
    """One rendered document; ``labels`` maps attribute to value (empty for task documents)."""

    text: str
    kind: DocumentKind
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _slot(rng: np.random.Generator, attribute: str, part: str) -> Slot:
    first_value = lexicons.attribute_values(attribute)[0]
    return Slot(attribute, part, int(rng.integers(len(lexicons.LEXICONS[attribute][first_value][part]))))


def draw_body_sentence(rng: np.random.Generator, template: SentenceTemplate | None = None,
                       copula_fraction: float = CorpusConfig.copula_fraction) -> Sentence:
    """A body sentence skeleton; ``template`` None draws copula (``copula_fraction``) or opinion."""
    if template is None:
        template = "copula" if rng.random() < copula_fraction else "opinion"
    connective = _slot(rng, "formality", "connective")
    noun = _slot(rng, "topic", "noun")
    if template == "copula":
        return (connective, "the", noun, _slot(rng, "tense", "copula"), _slot(rng, "sentiment", "adjective"), ".")
    return (connective, "i", _slot(rng, "tense", "opinion_verb"), "the", noun, _slot(rng, "sentiment", "adjective"), ".")


def draw_header(rng: np.random.Generator) -> Sentence:
    """The neutral first sentence: no attribute is visible before the first body sentence."""
    return ("note", "from", lexicons.AUTHOR_NAMES[rng.integers(len(lexicons.AUTHOR_NAMES))], ".")


def draw_labels(rng: np.random.Generator, config: CorpusConfig | None = None) -> dict[str, str]:
    """One value per attribute: uniformly, or by ``config.value_weights`` where it names the attribute."""
    labels = {}
    for name, values in lexicons.LEXICONS.items():
        probabilities = None if config is None else config.value_probabilities(name)
        if probabilities is None:
            labels[name] = lexicons.attribute_values(name)[rng.integers(len(values))]
        else:
            labels[name] = lexicons.attribute_values(name)[rng.choice(len(values), p=probabilities)]
    return labels


def draw_skeleton(rng: np.random.Generator, n_body_sentences: int,
                  copula_fraction: float = CorpusConfig.copula_fraction) -> Skeleton:
    return (draw_header(rng),) + tuple(draw_body_sentence(rng, None, copula_fraction) for _ in range(n_body_sentences))


def render_tokens(tokens: Sentence, labels: Mapping[str, str]) -> str:
    """Replace every slot by its word under ``labels`` and join with single spaces."""
    words = []
    for token in tokens:
        if isinstance(token, Slot):
            token = lexicons.LEXICONS[token.attribute][labels[token.attribute]][token.part][token.index]
        words.append(token)
    return " ".join(words)


def render_skeleton(skeleton: Skeleton, labels: Mapping[str, str]) -> str:
    return render_tokens(tuple(token for sentence in skeleton for token in sentence), labels)


def write_attribute_document(rng: np.random.Generator, config: CorpusConfig | None = None) -> Document:
    """A header and two to four body sentences (three to five sentences in all).

    At least two body sentences, so every document shows each attribute once and
    then rewards predicting it from context. ``config`` (default: the default corpus)
    sets the template mix and the value frequencies.
    """
    labels = draw_labels(rng, config)
    copula_fraction = CorpusConfig.copula_fraction if config is None else config.copula_fraction
    skeleton = draw_skeleton(rng, n_body_sentences=int(rng.integers(2, 5)), copula_fraction=copula_fraction)
    return Document(render_skeleton(skeleton, labels), "attribute", labels)


def generate_corpus(config: CorpusConfig) -> tuple[Document, ...]:
    """``config.n_documents`` documents, a pure function of ``config``."""
    fraction_sum = config.fact_document_fraction + config.arithmetic_document_fraction
    if not 0.0 <= fraction_sum <= 1.0:
        raise ValueError(f"Task document fractions sum to {fraction_sum}; they must leave room in [0, 1].")
    table = tasks.make_fact_table(config.fact_count, config.fact_table_seed)
    rng = np.random.default_rng(config.seed)
    documents = []
    for _ in range(config.n_documents):
        draw = rng.random()
        if draw < config.fact_document_fraction:
            documents.append(Document(tasks.write_fact_document(rng, table, config.fact_zipf_exponent), "fact"))
        elif draw < fraction_sum:
            first, second = (int(operand) for operand in rng.integers(0, config.max_operand + 1, size=2))
            chain_of_thought = bool(rng.random() < config.chain_of_thought_fraction)
            documents.append(Document(tasks.write_arithmetic_document(first, second, chain_of_thought), "arithmetic"))
        else:
            documents.append(write_attribute_document(rng, config))
    return tuple(documents)


def grammar_vocabulary(config: CorpusConfig) -> tuple[str, ...]:
    """Every word any document of ``config`` can contain, in a fixed order.

    The tokenizer learns these in addition to the sampled corpus, so a rare fact
    never maps to ``<unk>`` and the vocabulary size depends only on the fact table.
    """
    words = list(lexicons.GRAMMAR_WORDS) + list(lexicons.AUTHOR_NAMES)
    for values in lexicons.LEXICONS.values():
        for parts in values.values():
            for part_words in parts.values():
                words += part_words
    for fact in tasks.make_fact_table(config.fact_count, config.fact_table_seed):
        words += [fact.country, fact.city]
    words += [str(number) for number in range(2 * config.max_operand + 1)]
    return tuple(dict.fromkeys(words))
