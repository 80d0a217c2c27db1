"""Word alignment of two locally built tokenizers, checked by hand.

The *word* tokenizer (WordLevel, whitespace) gives one token per word plus ``<bos>``;
the *piece* tokenizer (BPE over characters with a SentencePiece-style ``▁`` marker)
cuts ``the cat sat .`` as::

    token   ▁th   e    ▁    ca   t    ▁    s    at   ▁    .
    slot     0    1    2    3    4    5    6    7    8    9
    chars   0-2  2-3  3-4  4-6  6-7  7-8  8-9  9-11 11-12 12-13

so ``the`` = slots {0, 1}, ``cat`` = {3, 4}, ``sat`` = {6, 7}, ``.`` = {9}; the bare
``▁`` tokens are spaces and belong to no word.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from lrt_jax.knowledge.token_alignment import (
    align_words,
    find_word_spans,
    gather_word_states,
    last_word_mask,
    real_word_rows,
    scatter_words_to_last_tokens,
    word_token_membership,
)

WORDS = ("<pad>", "<bos>", "<unk>", "the", "cat", "sat", "dog", "ran", ".")
LETTERS = "abcdefghijklmnopqrstuvwxyz."


def word_tokenizer() -> transformers.PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                                unk_token="<unk>")


def piece_tokenizer() -> transformers.PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<unk>": 1, "▁": 2}
    for piece in [*LETTERS, *("▁" + letter for letter in LETTERS), "ca", "at", "▁t", "▁th"]:
        vocab.setdefault(piece, len(vocab))
    merges = [("c", "a"), ("a", "t"), ("▁", "t"), ("▁t", "h")]
    backend = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")


@pytest.fixture(scope="module")
def alignment():
    # Row 1 is shorter, so both sides are left-padded there.
    return align_words(["the cat sat .", "dog ran"], piece_tokenizer(), word_tokenizer())


def test_word_spans_and_membership_by_hand():
    assert find_word_spans("the cat  sat .") == [(0, 3), (4, 7), (9, 12), (13, 14)]
    offsets = [(0, 0), (0, 2), (2, 3), (3, 4), (4, 6)]  # special, ▁th, e, ▁, ca
    expected = np.array([[0, 0], [1, 0], [1, 0], [0, 0], [0, 1]], bool)
    np.testing.assert_array_equal(word_token_membership(offsets, [(0, 3), (4, 7)]), expected)


def test_piece_tokenizer_cuts_as_documented():
    pieces = piece_tokenizer()
    assert pieces.convert_ids_to_tokens(pieces("the cat sat .")["input_ids"]) == [
        "▁th", "e", "▁", "ca", "t", "▁", "s", "at", "▁", "."]


def test_last_token_indices_by_hand(alignment):
    assert alignment.words == (("the", "cat", "sat", "."), ("dog", "ran"))
    np.testing.assert_array_equal(alignment.word_mask, [[1, 1, 1, 1], [1, 1, 0, 0]])
    # Teacher (pieces): 10 slots; row 1 is "▁", "d", "o", "g", "▁", "r", "a", "n" (8 tokens) after 2 pads.
    assert alignment.teacher.tokens.shape == (2, 10)
    np.testing.assert_array_equal(alignment.teacher.last_token_index[0], [1, 4, 7, 9])
    np.testing.assert_array_equal(alignment.teacher.last_token_index[1, :2], [2 + 3, 2 + 7])
    # Student (words): <bos> the cat sat . → 5 slots; row 1 is <pad> <pad> <bos> dog ran.
    np.testing.assert_array_equal(alignment.student.tokens[1], [0, 0, 1, 6, 7])
    np.testing.assert_array_equal(alignment.student.attention_mask[1], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(alignment.student.last_token_index, [[1, 2, 3, 4], [3, 4, 0, 0]])


def test_span_pooling_by_hand(alignment):
    pooling = alignment.teacher.span_pooling[0]
    expected = np.zeros((4, 10), np.float32)
    expected[0, [0, 1]] = expected[1, [3, 4]] = expected[2, [6, 7]] = 0.5
    expected[3, 9] = 1.0
    np.testing.assert_allclose(pooling, expected)
    assert not alignment.teacher.span_pooling[1, 2:].any()


def test_gather_word_states_in_jit(alignment):
    acts = np.random.default_rng(0).normal(size=(2, 10, 3)).astype(np.float32)
    last = jax.jit(lambda a: gather_word_states(a, alignment.teacher, "last"))(acts)
    mean = jax.jit(lambda a: gather_word_states(a, alignment.teacher, "mean"))(acts)
    np.testing.assert_allclose(last[0], acts[0, [1, 4, 7, 9]], rtol=1e-6)
    np.testing.assert_allclose(mean[0, 1], (acts[0, 3] + acts[0, 4]) / 2, rtol=1e-6)
    # "dog" = ▁ d o g: the ▁ the pre-tokenizer prepends carries the offsets of "d".
    np.testing.assert_allclose(mean[1, 0], acts[1, [2, 3, 4, 5]].mean(0), rtol=1e-6)
    rows = real_word_rows(last, alignment.word_mask)
    np.testing.assert_allclose(rows, np.concatenate([acts[0, [1, 4, 7, 9]], acts[1, [5, 9]]]), rtol=1e-6)


def test_scatter_words_to_last_tokens(alignment):
    word_values = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    selected = last_word_mask(alignment.word_mask)
    np.testing.assert_array_equal(selected, [[0, 0, 0, 1], [0, 1, 0, 0]])
    values, touched = scatter_words_to_last_tokens(word_values, alignment.student, selected)
    np.testing.assert_array_equal(touched, [[0, 0, 0, 0, 1], [0, 0, 0, 0, 1]])
    np.testing.assert_allclose(values[0, 4], word_values[0, 3])
    np.testing.assert_allclose(values[1, 4], word_values[1, 1])
    assert not np.asarray(values)[~np.asarray(touched)].any()


def test_words_one_tokenizer_misses_are_masked_and_slow_tokenizers_refused():
    # With spaces as words, the piece tokenizer's "▁" covers the space; the word tokenizer has no token there.
    alignment = align_words(["the cat"], piece_tokenizer(), word_tokenizer(), word_pattern=r"\S+| ")
    assert alignment.words == (("the", " ", "cat"),)
    np.testing.assert_array_equal(alignment.word_mask, [[1, 0, 1]])
    np.testing.assert_array_equal(alignment.teacher.last_token_index, [[1, 2, 4]])
    with pytest.raises(TypeError, match="fast tokenizer"):
        align_words(["cat"], object(), word_tokenizer())


def test_pad_multiple_buckets_width():
    alignment = align_words(["the cat"], word_tokenizer(), piece_tokenizer(), pad_multiple=8)
    assert alignment.teacher.tokens.shape == (1, 8) and alignment.student.tokens.shape == (1, 8)
    np.testing.assert_array_equal(alignment.teacher.last_token_index, [[6, 7]])
