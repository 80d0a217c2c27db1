"""Probe prompts, answer word sets and contrastive pairs for each latent attribute.

**Propensity.** A probe prompt ends right before the slot where an attribute shows
(:data:`~lrt_jax.organisms.lexicons.PROBED_PART`): the adjective for sentiment, the
noun for topic, the copula for tense, the connective for formality. With
``log p(w)`` the model's next-token log-probability, the propensity for the
``positive_value`` over the ``negative_value`` is::

    propensity = logsumexp_{w ∈ positive_answers} log p(w) − logsumexp_{w ∈ negative_answers} log p(w)

A *neutral* prompt (``context_value=None``) shows no word of the probed attribute,
e.g. ``note from mira . moreover the soup was`` for sentiment, so a good model is
near 0 there and steering by ``+α·v`` moves it. A *context* prompt first shows one or
two full sentences with ``context_value``, so a good model is far from 0.

**Contrastive pairs.** One skeleton rendered twice, with the attribute set to the
positive and to the negative value and every other word equal. Each text ends
before the attribute's next slot, so the last token's hidden state must carry the
attribute to predict it: the difference of means there is a steering vector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from lrt_jax.organisms import corpus, lexicons


@dataclasses.dataclass(frozen=True)
class _Contrast:
    """An attribute and the two of its values that are contrasted."""

    attribute: str
    positive_value: str
    negative_value: str


@dataclasses.dataclass(frozen=True)
class AttributeProbe(_Contrast):
    """Prompts whose next word reveals ``attribute``, and the two answer word sets."""

    prompts: tuple[str, ...]
    positive_answers: tuple[str, ...]
    negative_answers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ContrastivePairs(_Contrast):
    """``positive_texts[i]`` and ``negative_texts[i]`` differ only in ``attribute``'s words."""

    positive_texts: tuple[str, ...]
    negative_texts: tuple[str, ...]


def _value_pair(attribute: str, positive_value: str | None, negative_value: str | None) -> tuple[str, str]:
    """The two values to contrast; defaults to the attribute's first two (``+`` first)."""
    values = lexicons.attribute_values(attribute)
    positive_value = values[0] if positive_value is None else positive_value
    negative_value = values[1] if negative_value is None else negative_value
    for value in (positive_value, negative_value):
        if value not in values:
            raise ValueError(f"{attribute!r} has values {values}, not {value!r}.")
    if positive_value == negative_value:
        raise ValueError(f"Cannot contrast {attribute!r} value {positive_value!r} with itself.")
    return positive_value, negative_value


def _prefix_before_probed_slot(rng: np.random.Generator, attribute: str, n_context_sentences: int) -> corpus.Sentence:
    """Header, ``n_context_sentences`` body sentences, then a copula sentence cut before the slot."""
    skeleton = corpus.draw_skeleton(rng, n_context_sentences)
    probed = corpus.draw_body_sentence(rng, template="copula")
    part = lexicons.PROBED_PART[attribute]
    cut = next(i for i, token in enumerate(probed) if isinstance(token, corpus.Slot) and token.part == part)
    return tuple(token for sentence in skeleton for token in sentence) + probed[:cut]


def make_attribute_probe(
    attribute: str,
    *,
    positive_value: str | None = None,
    negative_value: str | None = None,
    context_value: str | None = None,
    count: int = 64,
    seed: int = 1234,
) -> AttributeProbe:
    """``count`` probe prompts for ``attribute`` (neutral when ``context_value`` is None).

    Other attributes take random values per prompt. With a ``context_value``, one or
    two full body sentences with that value come before the probed slot.
    """
    positive_value, negative_value = _value_pair(attribute, positive_value, negative_value)
    if context_value is not None and context_value not in lexicons.attribute_values(attribute):
        raise ValueError(f"{attribute!r} has values {lexicons.attribute_values(attribute)}, not {context_value!r}.")
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(count):
        labels = corpus.draw_labels(rng)
        if context_value is not None:
            labels[attribute] = context_value
        n_context_sentences = 0 if context_value is None else int(rng.integers(1, 3))
        prompts.append(corpus.render_tokens(_prefix_before_probed_slot(rng, attribute, n_context_sentences), labels))
    part = lexicons.PROBED_PART[attribute]
    return AttributeProbe(
        attribute,
        positive_value,
        negative_value,
        tuple(prompts),
        lexicons.lexicon_words(attribute, positive_value, part),
        lexicons.lexicon_words(attribute, negative_value, part),
    )


def make_contrastive_pairs(
    attribute: str,
    *,
    positive_value: str | None = None,
    negative_value: str | None = None,
    count: int = 64,
    seed: int = 4321,
) -> ContrastivePairs:
    """``count`` pairs of one to three body sentences, cut before the attribute's next slot."""
    positive_value, negative_value = _value_pair(attribute, positive_value, negative_value)
    rng = np.random.default_rng(seed)
    positive_texts, negative_texts = [], []
    for _ in range(count):
        labels = corpus.draw_labels(rng)
        tokens = _prefix_before_probed_slot(rng, attribute, n_context_sentences=int(rng.integers(1, 4)))
        positive_texts.append(corpus.render_tokens(tokens, {**labels, attribute: positive_value}))
        negative_texts.append(corpus.render_tokens(tokens, {**labels, attribute: negative_value}))
    return ContrastivePairs(attribute, positive_value, negative_value, tuple(positive_texts), tuple(negative_texts))


def answer_token_ids(tokenizer, words: Sequence[str]) -> np.ndarray:
    """Vocabulary ids ``[len(words)]`` of answer words, each of which must be one token.

    A word is encoded alone without special tokens — in a SentencePiece-style BPE that
    gives ``▁word``, the token that follows a space, not an inner piece spelled the
    same — and, if that is not one token, looked up as a token of the vocabulary.
    """
    ids = []
    for word in words:
        encoded = tokenizer(word, add_special_tokens=False)["input_ids"]
        token_id = encoded[0] if len(encoded) == 1 else tokenizer.convert_tokens_to_ids(word)
        ids.append(None if token_id is None or token_id == tokenizer.unk_token_id else token_id)
    missing = [word for word, token_id in zip(words, ids) if token_id is None]
    if missing:
        raise ValueError(f"Answer words {missing} are not single tokens of this tokenizer; use the organism's tokenizer.")
    return np.asarray(ids, dtype=np.int32)


def attribute_propensity(next_token_logprobs, positive_ids, negative_ids):
    """Propensity ``[batch]`` from next-token log-probabilities ``[batch, vocab]`` (see module doc)."""
    logprobs = jnp.asarray(next_token_logprobs)
    return logsumexp(logprobs[:, positive_ids], axis=-1) - logsumexp(logprobs[:, negative_ids], axis=-1)
