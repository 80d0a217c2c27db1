"""Position rules against explicit NumPy indexing, for left- and right-padded batches."""

import jax
import numpy as np
import pytest
import tokenizers
import transformers

from lrt_jax import steering

RIGHT_PADDED = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
LEFT_PADDED = RIGHT_PADDED[:, ::-1].copy()


@pytest.fixture
def acts():
    return np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)


@pytest.mark.parametrize("mask", [RIGHT_PADDED, LEFT_PADDED], ids=["right", "left"])
def test_last_token_takes_the_last_real_position(acts, mask):
    expected = np.stack([acts[b, np.flatnonzero(mask[b])[-1]] for b in range(3)])
    np.testing.assert_array_equal(steering.last_token(acts, mask), expected)
    np.testing.assert_array_equal(jax.jit(steering.last_token)(acts, mask), expected)


def test_token_at_and_masked_mean(acts):
    index = np.array([2, 0, 4])
    np.testing.assert_array_equal(steering.token_at(acts, index), acts[np.arange(3), index])
    expected_mean = np.stack([acts[b][RIGHT_PADDED[b] == 1].mean(axis=0) for b in range(3)])
    np.testing.assert_allclose(steering.masked_mean(acts, RIGHT_PADDED), expected_mean, rtol=1e-6)


def test_position_rules_reject_bad_inputs(acts):
    with pytest.raises(ValueError, match="attention mask"):
        steering.last_token(acts, RIGHT_PADDED[:, :4])
    with pytest.raises(ValueError, match="no token"):
        steering.masked_mean(acts, np.zeros((3, 5), int))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        steering.token_at(acts, np.array([0, 5, 1]))


def _letter_tokenizer(merge_paren_letter: bool):
    """A tiny word-level tokenizer; with ``merge_paren_letter`` it has a single ``"(A"`` token."""
    words = ["[PAD]", "Answer", ":", "(", "A", "B", ")", "Pick", "one", "(A", "(B"]
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[PAD]")
    backend = tokenizers.Tokenizer(model)
    pattern = r"\(?[AB]|\w+|[^\w\s]" if merge_paren_letter else r"\w+|[^\w\s]"
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="isolated")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]")


@pytest.mark.parametrize("merge", [False, True], ids=["split", "merged"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_find_answer_letter_positions(merge, padding_side):
    tokenizer = _letter_tokenizer(merge)
    tokenizer.padding_side = padding_side
    texts = ["Pick one Answer: (A", "Answer: (B)", "Pick Answer: (A"]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    positions = steering.find_answer_letter_positions(
        tokenizer, batch["input_ids"], batch["attention_mask"], ["A", "B", "A"]
    )
    letters = [tokenizer.decode([batch["input_ids"][row, p]]).strip("(") for row, p in enumerate(positions)]
    assert letters == ["A", "B", "A"]
    expected = [
        max(i for i, t in enumerate(tokenizer.convert_ids_to_tokens(ids)) if t.strip("(") in "AB" and t not in "()")
        for ids in batch["input_ids"]
    ]
    np.testing.assert_array_equal(positions, expected)
    with pytest.raises(ValueError, match="Row 1"):
        steering.find_answer_letter_positions(tokenizer, batch["input_ids"], batch["attention_mask"], "A")
