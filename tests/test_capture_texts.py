"""``capture_texts`` / ``capture_text_tokens`` against per-text unbatched captures indexed by hand."""

import jax
import numpy as np
import pytest
import transformers

import hf_models
import lrt_jax
from lrt_jax import parallel, positions

SITES = ["layers.0.resid_post", "final_norm"]
# Whitespace pre-tokenization: every word and every punctuation run is one token.
TEXTS = ["Question : is it ? Answer : ( A", "Answer : ( B )", "1 2 3", "Question : Yes or No ? Answer : ( A"]
LETTERS = ["A", "B", "A", "A"]
TEXTS_AB = [TEXTS[0], TEXTS[1], TEXTS[3]]
LETTERS_AB = [LETTERS[0], LETTERS[1], LETTERS[3]]
HAND_LETTER_INDEX = [8, 3, 9]  # "A" is the 9th of 9 tokens, "B" the 4th of 5 ("( B )"), "A" the 10th of 10


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("word_tokenizer")
    hf_models.save_word_tokenizer(directory, TEXTS)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    config = lrt_jax.ModelConfig("llama", len(tokenizer), 32, 2, 4, 2, 8, 48)
    return lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(0)), tokenizer, "tiny")


def alone(lm, text):
    """``{site: [len, width]}``: the text captured by itself, no padding, nothing reduced."""
    ids = np.asarray(lm.tokenizer(text)["input_ids"])[None]
    return {site: np.asarray(value)[0] for site, value in lrt_jax.capture(lm, ids, SITES, reduce=None).items()}


def test_the_hand_letter_index_is_the_letter_token(lm):
    for text, letter, index in zip(TEXTS_AB, LETTERS_AB, HAND_LETTER_INDEX):
        assert lm.tokenizer.convert_ids_to_tokens(lm.tokenizer(text)["input_ids"])[index] == letter


@pytest.mark.parametrize("position, pick", [
    ("last", lambda full, i: full[-1]),
    ("mean", lambda full, i: full.mean(0)),
    (0, lambda full, i: full[0]),
    (-2, lambda full, i: full[-2]),
    ([1, 0, 2, 5], lambda full, i: full[[1, 0, 2, 5][i]]),
])
def test_each_position_equals_the_text_captured_alone(lm, position, pick):
    got = lrt_jax.capture_texts(lm, TEXTS, SITES, position=position, batch_size=3, progress=False)
    assert list(got) == SITES
    for i, text in enumerate(TEXTS):
        reference = alone(lm, text)
        for site in SITES:
            assert got[site].shape == (len(TEXTS), reference[site].shape[-1]) and got[site].dtype == np.float32
            np.testing.assert_allclose(got[site][i], pick(reference[site], i), atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_answer_letter_reads_the_hand_found_token(lm, batch_size):
    got = lrt_jax.capture_texts(lm, TEXTS_AB, SITES, position="answer_letter", letters=LETTERS_AB,
                                batch_size=batch_size, progress=False)
    for i, (text, index) in enumerate(zip(TEXTS_AB, HAND_LETTER_INDEX)):
        reference = alone(lm, text)
        for site in SITES:
            np.testing.assert_allclose(got[site][i], reference[site][index], atol=1e-5)


def test_answer_letter_columns_in_the_left_padded_batch(lm):
    batch = lrt_jax.encode(lm, TEXTS_AB)
    lengths = batch.attention_mask.sum(1)
    expected = batch.tokens.shape[1] - lengths + np.array(HAND_LETTER_INDEX)
    found = positions.find_answer_letter_positions(lm.tokenizer, batch.tokens, batch.attention_mask, LETTERS_AB)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_array_equal(positions.columns_of_real_positions(batch.attention_mask, HAND_LETTER_INDEX),
                                  expected)


def test_results_do_not_depend_on_the_batch_size(lm):
    for position in ["last", "mean", -3]:
        runs = [lrt_jax.capture_texts(lm, TEXTS, SITES, position=position, batch_size=size, progress=False)
                for size in (1, 3, len(TEXTS))]
        for run in runs[1:]:
            for site in SITES:
                np.testing.assert_allclose(run[site], runs[0][site], atol=1e-5)


def test_every_position_is_the_left_padded_full_capture(lm):
    got = lrt_jax.capture_texts(lm, TEXTS, "final_norm", position=None, batch_size=3, progress=False)["final_norm"]
    longest = max(len(lm.tokenizer(text)["input_ids"]) for text in TEXTS)
    assert got.shape == (len(TEXTS), longest, lm.config.d_model)
    for i, text in enumerate(TEXTS):
        reference = alone(lm, text)["final_norm"]
        np.testing.assert_allclose(got[i, longest - len(reference):], reference, atol=1e-5)


def test_text_tokens_are_every_real_token_in_order(lm):
    acts, text_index = lrt_jax.capture_text_tokens(lm, TEXTS, SITES, batch_size=3, progress=False)
    references = [alone(lm, text) for text in TEXTS]
    for site in SITES:
        np.testing.assert_allclose(acts[site], np.concatenate([r[site] for r in references]), atol=1e-5)
    np.testing.assert_array_equal(text_index, np.repeat(np.arange(len(TEXTS)), [len(r[SITES[0]]) for r in references]))


def test_batches_placed_over_a_mesh_give_the_same_rows(lm):
    mesh = parallel.make_mesh("data=2,fsdp=2,tensor=2")
    options = dict(position=[1, 0, 2, 5], batch_size=8, progress=False)
    placed = lrt_jax.capture_texts(lm, TEXTS, SITES, place_batch=lambda a: parallel.shard_batch(a, mesh), **options)
    plain = lrt_jax.capture_texts(lm, TEXTS, SITES, **options)
    for site in SITES:
        np.testing.assert_allclose(placed[site], plain[site], atol=1e-5)


def test_model_dtype_is_kept_on_request(lm):
    half = lm._replace(params=jax.tree.map(lambda p: p.astype("bfloat16"), lm.params))
    got = lrt_jax.capture_texts(half, TEXTS[:2], SITES, dtype=None, progress=False)
    assert got[SITES[0]].dtype == jax.numpy.bfloat16


@pytest.mark.parametrize("kwargs, match", [
    (dict(texts=[]), "texts is empty"),
    (dict(texts=["1 2", ""]), r"texts \[1\] encode to no tokens"),
    (dict(sites=["layers.7.resid_post"]), "layer 7"),
    (dict(position=5), "Row 1: position 5 is outside its 5 real tokens"),
    (dict(position=[0, 0, -4, 0]), "Row 2: position -4 is outside its 3 real tokens"),
    (dict(position=[0, 1]), "one integer or one per row"),
    (dict(position="first"), "position must be 'last', 'mean', 'answer_letter'"),
    (dict(position="answer_letter"), "needs letters"),
    (dict(position="answer_letter", letters=LETTERS[:2]), "Got 2 letters for 4 rows"),
    (dict(position="answer_letter", letters=LETTERS), r"Row 2: no token reading 'A'.*row i is texts\[i\]"),
    (dict(letters="A"), "letters are read only with position='answer_letter'"),
])
def test_errors_name_the_problem(lm, kwargs, match):
    arguments = dict(texts=TEXTS, sites=SITES, progress=False) | kwargs
    with pytest.raises((ValueError, lrt_jax.UnknownSiteError), match=match):
        lrt_jax.capture_texts(lm, arguments.pop("texts"), arguments.pop("sites"), **arguments)


@pytest.mark.parametrize("position", ["last", 0])
def test_a_tokenizer_larger_than_the_vocabulary_is_refused(lm, position):
    config = lrt_jax.ModelConfig("llama", 5, 32, 2, 4, 2, 8, 48)
    small = lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(0)), lm.tokenizer)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 5\)"):
        lrt_jax.capture_texts(small, TEXTS, SITES, position=position, progress=False)
