"""Steered scoring against a Python loop of single ``forward(..., interventions=Add(...))`` calls.

The grid scorers vmap over vectors × α inside one compiled call and unembed only the
scored positions; the reference runs the public ``lrt_jax.forward`` once per setting
(and per row for multiple choice), takes ``log_softmax`` of the full logits and reads
the answers off. Also: the LRT comparison against SciPy/NumPy statistics of the same
table, the controls, and the tidy export round trip.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.stats

import lrt_jax
from lrt_jax import steering
from lrt_jax.evaluation import lrt_comparison, plot_lrt_comparison, score_multiple_choice, score_propensity
from lrt_jax.interventions import Add
from lrt_jax.results import ResultsTable
from lrt_jax.tasks import ABItem, MCItem, PromptFormat
from lrt_jax.text import encode

TOLERANCE = 1e-4
FORMAT = PromptFormat("plain")
SITE = "layers.0.resid_post"
ALPHAS = np.array([-3.0, 0.0, 1.5, 4.0], np.float32)
ITEMS = tuple(ABItem(f"w{i} w{i + 1} " * (1 + i % 3) + "Choices : ( A ) w4 ( B ) w5", "AB"[i % 2], "BA"[i % 2])
              for i in range(5))


@pytest.fixture(scope="module")
def lm(word_checkpoint):
    return lrt_jax.load(word_checkpoint("llama"))


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return {"native": rng.normal(size=64).astype(np.float32), "transferred": rng.normal(size=64).astype(np.float32)}


def _loop_propensity(lm, vector, alpha, positions, normalize):
    prompts = [f"Question: {item.question}\nAnswer: (" for item in ITEMS]
    batch = encode(lm, prompts)
    logits = lrt_jax.forward(lm, batch.tokens, attention_mask=batch.attention_mask,
                             interventions=Add(SITE, vector, alpha, positions=positions, normalize=normalize))
    logprobs = np.asarray(jax.nn.log_softmax(logits[:, -1]))
    vocab = lm.tokenizer.get_vocab()
    return np.array([logprobs[row, vocab[item.answer_matching]] - logprobs[row, vocab[item.answer_not_matching]]
                     for row, item in enumerate(ITEMS)])


@pytest.mark.parametrize("positions, normalize", [("all", None), ("last", "residual")])
def test_propensity_grid_equals_loop_of_forward_calls(lm, vectors, positions, normalize):
    table = score_propensity(lm, ITEMS, fmt=FORMAT, vectors=vectors, alphas=ALPHAS, site=SITE, positions=positions,
                             normalize=normalize, batch_size=3)
    assert len(table) == len(vectors) * len(ALPHAS) * len(ITEMS)
    for name, vector in vectors.items():
        got_alphas, grid = table.propensity_matrix(vector=name, metric="logit_diff")
        np.testing.assert_array_equal(got_alphas, np.sort(ALPHAS))
        expected = np.stack([_loop_propensity(lm, vector, float(a), positions, normalize) for a in got_alphas])
        np.testing.assert_allclose(grid, expected, atol=TOLERANCE, rtol=0)
    assert np.ptp(grid[:, 0]) > 0.01  # steering moves the propensity, so α is really applied


def test_p_matching_is_the_two_answer_probability(lm, vectors):
    diff = score_propensity(lm, ITEMS, fmt=FORMAT, vectors=vectors, alphas=ALPHAS, site=SITE, batch_size=3)
    prob = score_propensity(lm, ITEMS, fmt=FORMAT, vectors=vectors, alphas=ALPHAS, site=SITE, batch_size=3,
                            metric="p_matching")
    expected = 1.0 / (1.0 + np.exp(-np.array([r.value for r in diff.records])))
    np.testing.assert_allclose([r.value for r in prob.records], expected, atol=1e-6)


def test_multiple_choice_grid_equals_loop_of_forward_calls(lm, vectors):
    items = (MCItem("w1 w2", ("w4", "w5 w6 w7"), (1, 0)), MCItem("w3", ("w8 w9", "w10", "w11 w12 w13"), (0, 1, 1)))
    table = score_multiple_choice(lm, items, fmt=FORMAT, vectors=vectors, alphas=ALPHAS[:2], site=SITE, batch_size=3)
    for name, vector in list(vectors.items())[1:]:  # one vector suffices here; each row shape compiles anew
        for alpha in ALPHAS[:2]:
            for index, item in enumerate(items):
                logprobs = []
                for choice in item.choices:
                    prompt = encode(lm, f"Question: {item.question}\nAnswer:").tokens
                    whole = encode(lm, f"Question: {item.question}\nAnswer: {choice}").tokens
                    logits = lrt_jax.forward(lm, whole, interventions=Add(SITE, vector, float(alpha)))
                    row = np.asarray(jax.nn.log_softmax(logits[0]))
                    logprobs.append(sum(row[p - 1, whole[0, p]] for p in range(prompt.shape[1], whole.shape[1])))
                true = np.array(item.labels) == 1
                expected_mc2 = np.exp(logprobs)[true].sum() / np.exp(logprobs).sum()
                (mc2,) = table.select(vector=name, alpha=float(alpha), item=index, metric="mc2").records
                assert mc2.value == pytest.approx(expected_mc2, abs=TOLERANCE)


def test_lrt_comparison_with_controls_matches_scipy(lm, vectors, tmp_path):
    native = steering.SteeringVector(vectors["native"], steering.VectorInfo("m", SITE, 64, "answer_letter", "test"))
    controls = {
        "random": steering.random_vector_like(native, jax.random.key(1)).vector,
        "unmapped": steering.unmapped_vector(
            steering.SteeringVector(vectors["transferred"][:48], steering.VectorInfo("src", SITE, 48, "x", "y")),
            64, target_model="m", target_site=SITE).vector,
    }
    np.testing.assert_allclose(np.linalg.norm(controls["random"]), np.linalg.norm(vectors["native"]), rtol=1e-5)
    table = score_propensity(lm, ITEMS, fmt=FORMAT, vectors={**vectors, **controls}, alphas=ALPHAS, site=SITE)
    comparison = lrt_comparison(table)
    native_grid = table.propensity_matrix(vector="native", metric="logit_diff")[1]
    for name in ("transferred", "random", "unmapped"):
        grid = table.propensity_matrix(vector=name, metric="logit_diff")[1]
        for a, alpha in enumerate(np.sort(ALPHAS)):
            (pearson,) = comparison.select(vector=name, alpha=float(alpha), metric="pearson").records
            (mse,) = comparison.select(vector=name, alpha=float(alpha), metric="mse").records
            assert pearson.value == pytest.approx(scipy.stats.pearsonr(native_grid[a], grid[a])[0], abs=1e-5)
            assert mse.value == pytest.approx(np.mean((native_grid[a] - grid[a]) ** 2), rel=1e-5)
        (slope,) = comparison.select(vector=name, metric="slope").records
        assert slope.value == pytest.approx(np.polyfit(np.sort(ALPHAS), grid.mean(axis=1), 1)[0], rel=1e-4)
    plot_lrt_comparison(table, tmp_path / "lrt.png", transferred=("transferred",), controls=("random", "unmapped"))
    assert (tmp_path / "lrt.png").stat().st_size > 0


def test_tidy_records_round_trip_and_cover_the_grid(lm, vectors, tmp_path):
    table = score_propensity(lm, ITEMS, fmt=FORMAT, vectors=vectors, alphas=ALPHAS, site=SITE, batch_size=3)
    cells = {(r.vector, r.alpha, r.item) for r in table.records}
    assert cells == {(v, float(a), i) for v in vectors for a in ALPHAS for i in range(len(ITEMS))}
    table.to_json(tmp_path / "t.json")
    table.to_csv(tmp_path / "t.csv")
    assert ResultsTable.from_json(tmp_path / "t.json") == table
    assert ResultsTable.from_csv(tmp_path / "t.csv") == table


def test_multi_token_answer_is_an_actionable_error(lm):
    with pytest.raises(ValueError, match="is 2 tokens"):
        score_propensity(lm, (ABItem("w1 w2", "A", "w3 w4"),), fmt=FORMAT)


def test_vector_for_another_site_is_rejected(lm, vectors):
    wrong = steering.SteeringVector(vectors["native"], steering.VectorInfo("m", "layers.1.resid_post", 64, "x", "y"))
    with pytest.raises(steering.VectorMismatchError):
        score_propensity(lm, ITEMS, fmt=FORMAT, vectors={"native": wrong}, alphas=ALPHAS, site=SITE)


def test_an_answer_that_is_the_unknown_token_is_refused(lm):
    assert lm.tokenizer.convert_tokens_to_ids("Z") == lm.tokenizer.unk_token_id  # "Z" is not in the vocabulary
    with pytest.raises(ValueError, match=r"Answer 'Z' of prompt 0 is the tokenizer's unknown token"):
        score_propensity(lm, (ABItem("w1 w2 Choices : ( A ) w4 ( B ) w5", "A", "Z"),), fmt=FORMAT)


def test_two_answers_of_one_token_are_refused(lm):
    with pytest.raises(ValueError, match=r"Answers \('A', 'A'\) of prompt 0 are the same token"):
        score_propensity(lm, (ABItem("w1 w2", "A", "A"),), fmt=FORMAT)


def test_a_prompt_longer_than_the_context_is_refused(lm):
    limit = lm.config.max_position_embeddings
    long_question = " ".join(f"w{i % 50}" for i in range(limit + 5)) + " Choices : ( A ) w4 ( B ) w5"
    with pytest.raises(ValueError, match=rf"exceeds the model's context of {limit} positions"):
        score_propensity(lm, (ABItem(long_question, "A", "B"),), fmt=FORMAT)
