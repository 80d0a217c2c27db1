"""encode/decode against the tokenizer's own ids, and generation with the tokenizer's pad id."""

from __future__ import annotations

import numpy as np
import pytest

from lrt_jax import generate
from lrt_jax.loading import load
from lrt_jax.text import decode, encode, fixed_size_batches

TEXTS = ["w5 w17 w3", "w40", "w9 w9 w100 w2 w61"]


@pytest.fixture
def lm(tiny_hf_checkpoint):
    return load(tiny_hf_checkpoint("llama", with_tokenizer=True))


def test_encode_left_pads_the_tokenizer_ids(lm):
    batch = encode(lm, TEXTS)
    assert batch.tokens.shape == batch.attention_mask.shape == (3, 5)
    for row, text in enumerate(TEXTS):
        ids = lm.tokenizer(text)["input_ids"]
        np.testing.assert_array_equal(batch.tokens[row, 5 - len(ids):], ids)
        np.testing.assert_array_equal(batch.attention_mask[row], np.arange(5) >= 5 - len(ids))
        assert (batch.tokens[row, :5 - len(ids)] == lm.tokenizer.pad_token_id).all()
    assert decode(lm, batch.tokens, batch.attention_mask) == TEXTS


def test_generate_from_encoded_text_pads_stopped_rows_with_the_tokenizer_pad(lm):
    batch = encode(lm, TEXTS)
    free = generate(lm, batch.tokens, attention_mask=batch.attention_mask, max_new_tokens=4)
    stop = int(free.tokens[0, 0])
    stopped = generate(lm, batch.tokens, attention_mask=batch.attention_mask, max_new_tokens=4, stop_tokens=(stop,))
    assert (np.asarray(stopped.tokens)[0, 1:] == lm.tokenizer.pad_token_id).all()
    texts = decode(lm, stopped.tokens, stopped.generated_mask)
    assert texts[0] == lm.tokenizer.decode([stop])


def test_text_helpers_reject_bad_input(lm):
    with pytest.raises(ValueError, match="no tokenizer"):
        encode(lm._replace(tokenizer=None), TEXTS)
    with pytest.raises(ValueError, match=r"texts \[1\] encode to no tokens"):
        encode(lm, ["w1", ""])
    with pytest.raises(ValueError, match="does not match"):
        decode(lm, np.zeros((2, 3), np.int32), np.ones((2, 4), bool))


def test_fixed_size_batches_repeat_the_last_row_of_a_short_batch():
    batches = [(start, count, list(rows)) for start, count, rows in fixed_size_batches(7, 3)]
    assert batches == [(0, 3, [0, 1, 2]), (3, 3, [3, 4, 5]), (6, 1, [6, 6, 6])]
    assert [list(rows) for _, _, rows in fixed_size_batches(2, 4)] == [[0, 1, 1, 1]]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        next(fixed_size_batches(3, 0))


def test_encode_refuses_an_empty_list_and_non_strings(lm):
    with pytest.raises(ValueError, match="texts is empty"):
        encode(lm, [])
    with pytest.raises(TypeError, match=r"texts must be strings; items \[1\]"):
        encode(lm, ["ok", 5])


def test_decode_refuses_negative_ids(lm):
    with pytest.raises(ValueError, match="negative ids"):
        decode(lm, np.array([[3, -1]]))
