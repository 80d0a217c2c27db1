"""Word alignment of two tokenizations of the same text, through character offsets.

Two models with different vocabularies cut one text into different tokens, so their
hidden states ``[seq_teacher, d_teacher]`` and ``[seq_student, d_student]`` have no
common row index. Words do: a *word* is a character span of the text (by default a
maximal run of non-whitespace, ``\\S+``), and a fast tokenizer's
``return_offsets_mapping`` says which characters every token covers. A token belongs
to every word whose span it overlaps by at least one character, so a leading-space
marker (``▁``, ``Ġ``) or a bare space token belongs to no word and special tokens
(empty offsets) to none.

For each text and each tokenizer this gives, per word ``w``:

* ``last_token_index[w]`` — the slot of the word's last token (the position where a
  causal model has read the whole word; where substitution writes);
* ``span_pooling[w, :]`` — ``1/k`` on the word's ``k`` tokens, 0 elsewhere (span mean).

A word counts (``word_mask``) only if both tokenizers give it at least one token.
Token rows are left-padded (like :func:`lrt_jax.encode`), optionally to a multiple of
``pad_multiple`` so that growing texts keep one compiled shape. Every array is NumPy and
every function that uses them is pure ``jnp``, so gathering aligned states
``[batch, n_words, d]`` happens inside ``jit``::

    alignment = align_words(texts, teacher.tokenizer, student.tokenizer)
    acts = lrt_jax.capture(teacher, alignment.teacher.tokens, site,
                           attention_mask=alignment.teacher.attention_mask)[site]
    per_word = gather_word_states(acts, alignment.teacher, "mean")      # [batch, n_words, d]
    rows = real_word_rows(per_word, alignment.word_mask)                 # [n_real_words, d]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.text import pad_id_of

WORD_PATTERN = r"\S+"
Pooling = Literal["last", "mean"]


class TokenizedTexts(NamedTuple):
    """One tokenizer's left-padded view of the aligned texts.

    Attributes:
      tokens: int32 ``[batch, seq]``.
      attention_mask: bool ``[batch, seq]``, true on real tokens.
      last_token_index: int32 ``[batch, n_words]``, slot of each word's last token (0 for absent words).
      span_pooling: float32 ``[batch, n_words, seq]``, rows averaging the word's tokens (zero for absent words).
    """

    tokens: np.ndarray
    attention_mask: np.ndarray
    last_token_index: np.ndarray
    span_pooling: np.ndarray


class WordAlignment(NamedTuple):
    """Words of ``batch`` texts located in the teacher's and the student's tokens.

    Attributes:
      words: per text, its words (strings), in order.
      word_mask: bool ``[batch, n_words]``, a real word covered by both tokenizers.
      teacher: the teacher tokenizer's :class:`TokenizedTexts`.
      student: the student tokenizer's :class:`TokenizedTexts`.
    """

    words: tuple[tuple[str, ...], ...]
    word_mask: np.ndarray
    teacher: TokenizedTexts
    student: TokenizedTexts


def find_word_spans(text: str, word_pattern: str = WORD_PATTERN) -> list[tuple[int, int]]:
    """Character spans ``[(start, end), ...]`` of the words of ``text`` (matches of ``word_pattern``)."""
    return [match.span() for match in re.finditer(word_pattern, text) if match.end() > match.start()]


def word_token_membership(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Bool ``[n_tokens, n_words]``: token ``i`` overlaps word ``j`` by at least one character."""
    token_span = np.asarray(offsets, np.int64).reshape(-1, 2)
    word_span = np.asarray(spans, np.int64).reshape(-1, 2)
    overlap_start = np.maximum(token_span[:, None, 0], word_span[None, :, 0])
    overlap_end = np.minimum(token_span[:, None, 1], word_span[None, :, 1])
    return overlap_end > overlap_start


def _tokenize_with_offsets(tokenizer, texts: Sequence[str], add_special_tokens: bool):
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"Token alignment needs a fast tokenizer (character offsets); got {type(tokenizer).__name__}. "
            "Load it with transformers.AutoTokenizer.from_pretrained(path, use_fast=True)."
        )
    encoded = tokenizer(list(texts), add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return encoded["input_ids"], encoded["offset_mapping"]


def locate_words(tokenizer, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], *,
                 add_special_tokens: bool = True, pad_multiple: int = 1) -> tuple[TokenizedTexts, np.ndarray]:
    """Tokenize ``texts`` (left-padded) and find the tokens of each word span.

    Returns:
      ``(TokenizedTexts, covered)`` with ``covered`` bool ``[batch, n_words]``: the word
      has at least one token in this tokenization.
    """
    ids, offsets = _tokenize_with_offsets(tokenizer, texts, add_special_tokens)
    seq = -(-max(len(row) for row in ids) // pad_multiple) * pad_multiple
    n_words = max([len(row) for row in spans] + [1])
    tokens = np.full((len(ids), seq), pad_id_of(tokenizer), np.int32)
    mask = np.zeros((len(ids), seq), bool)
    last_token_index = np.zeros((len(ids), n_words), np.int32)
    span_pooling = np.zeros((len(ids), n_words, seq), np.float32)
    covered = np.zeros((len(ids), n_words), bool)
    for row, (row_ids, row_offsets, row_spans) in enumerate(zip(ids, offsets, spans)):
        start = seq - len(row_ids)
        tokens[row, start:] = row_ids
        mask[row, start:] = True
        if not row_spans:
            continue
        membership = word_token_membership(row_offsets, row_spans)  # [n_tokens, n_row_words]
        counts = membership.sum(axis=0)
        n_row_words = len(row_spans)
        covered[row, :n_row_words] = counts > 0
        last = len(row_ids) - 1 - np.argmax(membership[::-1], axis=0)
        last_token_index[row, :n_row_words] = np.where(counts > 0, start + last, 0)
        span_pooling[row, :n_row_words, start:] = (membership / np.maximum(counts, 1)).T
    return TokenizedTexts(tokens, mask, last_token_index, span_pooling), covered


def align_words(texts: Sequence[str], teacher_tokenizer, student_tokenizer, *, word_pattern: str = WORD_PATTERN,
                add_special_tokens: bool = True, pad_multiple: int = 1) -> WordAlignment:
    """Align the words of ``texts`` across two fast tokenizers.

    Args:
      texts: the strings both models read.
      teacher_tokenizer, student_tokenizer: fast HF tokenizers (``return_offsets_mapping``).
      word_pattern: regular expression of a word; the default ``\\S+`` splits on whitespace.
      add_special_tokens: let each tokenizer add its own specials (e.g. ``<bos>``); they belong to no word.
      pad_multiple: left-pad both sides to a multiple of this width, so that texts that
        grow by a few tokens (per-step generation) reuse one compiled shape.

    Returns:
      a :class:`WordAlignment`; ``word_mask`` drops words either tokenizer does not cover.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("align_words needs at least one text.")
    spans = [find_word_spans(text, word_pattern) for text in texts]
    teacher, teacher_covered = locate_words(teacher_tokenizer, texts, spans, add_special_tokens=add_special_tokens,
                                            pad_multiple=pad_multiple)
    student, student_covered = locate_words(student_tokenizer, texts, spans, add_special_tokens=add_special_tokens,
                                            pad_multiple=pad_multiple)
    words = tuple(tuple(text[start:end] for start, end in row) for text, row in zip(texts, spans))
    return WordAlignment(words, teacher_covered & student_covered, teacher, student)


def gather_word_states(activations: jax.Array, side: TokenizedTexts, pooling: Pooling) -> jax.Array:
    """Per-word states ``[batch, n_words, d]`` from token states ``[batch, seq, d]`` (jittable).

    ``pooling="last"`` takes each word's last token, ``"mean"`` averages its tokens.
    Absent words give zeros (``"mean"``) or the state of slot 0 (``"last"``): mask them out.
    """
    if pooling == "last":
        return jnp.take_along_axis(activations, jnp.asarray(side.last_token_index)[..., None], axis=1)
    if pooling == "mean":
        return jnp.einsum("bws,bsd->bwd", jnp.asarray(side.span_pooling, activations.dtype), activations)
    raise ValueError(f"pooling must be 'last' or 'mean'; got {pooling!r}.")


def real_word_rows(word_states, word_mask) -> np.ndarray:
    """The rows ``[n_real_words, d]`` of ``word_states [batch, n_words, d]`` where ``word_mask`` is true."""
    return np.asarray(word_states)[np.asarray(word_mask, bool)]


def scatter_words_to_last_tokens(word_values: jax.Array, side: TokenizedTexts, selected_words) -> tuple:
    """Put per-word values on the slots of each word's last token (jittable).

    Args:
      word_values: ``[batch, n_words, d]``.
      side: the tokenization whose slots receive them.
      selected_words: bool ``[batch, n_words]``, the words to write (include ``word_mask``).

    Returns:
      ``(values [batch, seq, d], touched [batch, seq] bool)``; a token that ends several
      selected words gets the mean of their values, untouched slots hold zeros.
    """
    seq = side.tokens.shape[1]
    placement = jax.nn.one_hot(jnp.asarray(side.last_token_index), seq, dtype=word_values.dtype)
    placement = placement * jnp.asarray(selected_words, word_values.dtype)[..., None]  # [batch, n_words, seq]
    writers = jnp.sum(placement, axis=1)  # [batch, seq]
    values = jnp.einsum("bws,bwd->bsd", placement, word_values) / jnp.maximum(writers, 1)[..., None]
    return values, writers > 0


def last_word_mask(word_mask) -> np.ndarray:
    """Bool ``[batch, n_words]`` selecting only the last real word of each text."""
    word_mask = np.asarray(word_mask, bool)
    n_words = word_mask.shape[1]
    last = n_words - 1 - np.argmax(word_mask[:, ::-1], axis=1)
    return (np.arange(n_words)[None, :] == last[:, None]) & word_mask.any(axis=1, keepdims=True)
