"""The LRT pipeline's pieces against independent references (unpadded runs, loops, NumPy, sklearn)."""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp, log_softmax
from sklearn.metrics import r2_score

import lrt_jax
from lrt_jax import lrt
from lrt_jax.organisms import probes
from lrt_jax.organisms.corpus import CorpusConfig, generate_corpus

TEXTS = [d.text for d in generate_corpus(CorpusConfig(n_documents=40, seed=5)) if d.kind == "attribute"]


def test_token_activations_equal_unpadded_runs_per_text(random_pair):
    source, _ = random_pair
    texts = TEXTS[:7]
    acts, text_index = lrt_jax.capture_text_tokens(source, texts, ["layers.1.resid_post"], batch_size=3,
                                                   progress=False)
    expected = []
    for text in texts:
        ids = np.asarray(source.tokenizer(text)["input_ids"])[None]
        expected.append(np.asarray(lrt_jax.capture(source, ids, ["layers.1.resid_post"])["layers.1.resid_post"])[0])
    np.testing.assert_allclose(acts["layers.1.resid_post"], np.concatenate(expected), atol=1e-5)
    np.testing.assert_array_equal(text_index, np.repeat(np.arange(7), [len(e) for e in expected]))


def test_last_token_activations_equal_unpadded_runs(random_pair):
    source, _ = random_pair
    texts = TEXTS[:5]
    got = lrt.reduced_activations(source, texts, "layers.0.resid_post", batch_size=2)
    for row, text in zip(got, texts):
        ids = np.asarray(source.tokenizer(text)["input_ids"])[None]
        full = lrt_jax.capture(source, ids, ["layers.0.resid_post"])["layers.0.resid_post"]
        np.testing.assert_allclose(row, np.asarray(full)[0, -1], atol=1e-5)


def test_steered_propensity_equals_loop_of_steered_forward_passes(random_pair):
    _, target = random_pair
    probe = probes.make_attribute_probe("sentiment", count=5, seed=3)
    positive = probes.answer_token_ids(target.tokenizer, probe.positive_answers)
    negative = probes.answer_token_ids(target.tokenizer, probe.negative_answers)
    vectors = np.asarray(jax.random.normal(jax.random.key(2), (2, 48)))
    alphas = np.asarray([0.0, 0.5, 2.0], np.float32)
    site = "layers.1.resid_post"
    got = lrt.steered_propensity(target, probe.prompts, site, vectors, alphas, positive, negative)
    assert got.shape == (2, 3, 5)
    for i, prompt in enumerate(probe.prompts):
        ids = np.asarray(target.tokenizer(prompt)["input_ids"])[None]
        for k in range(2):
            for a, alpha in enumerate(alphas):
                steer = lrt_jax.Add(site, vectors[k], float(alpha), normalize="residual")
                logits = np.asarray(lrt_jax.forward(target, ids, interventions=steer), np.float64)[0, -1]
                logp = log_softmax(logits)
                expected = logsumexp(logp[positive]) - logsumexp(logp[negative])
                np.testing.assert_allclose(got[k, a, i], expected, atol=2e-4)


def test_relative_shift_hand_computation():
    reference = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 4.0]])  # mean change 0, 1.5, 2.5
    other = np.array([[1.0, 1.0], [1.5, 2.0], [1.0, 1.0]])      # mean change 0, 0.75, 0
    np.testing.assert_allclose(lrt.relative_shift(other, reference)[1:], [0.5, 0.0])
    assert np.isnan(lrt.relative_shift(other, reference)[0])  # the reference does not move at α=0


def test_fit_layer_maps_reports_held_out_r2_like_sklearn(random_pair):
    source, target = random_pair
    texts = TEXTS[:20]
    states, r2 = lrt.fit_layer_maps(source, target, texts, [(1, 2)], ridge_alphas=(0.1, 10.0), seed=0)
    paired = lrt.paired_token_activations(source, target, texts, ["layers.1.resid_post"], ["layers.2.resid_post"])
    held_out = np.random.default_rng(0).permutation(len(texts))[: len(texts) // 5]
    rows = np.isin(paired.text_index, held_out)
    x, y = paired.source["layers.1.resid_post"][rows], paired.target["layers.2.resid_post"][rows]
    state = states[(1, 2)]
    y_hat = x @ np.asarray(lrt_jax.mappers.linear(state)) + np.asarray(lrt_jax.mappers.bias(state))
    assert r2[(1, 2)] == pytest.approx(r2_score(y, y_hat, multioutput="variance_weighted"), abs=1e-4)


def test_paired_activations_refuse_different_vocabularies(random_pair, organism_tokenizer):
    source, target = random_pair
    other = organism_tokenizer.__class__(tokenizer_object=organism_tokenizer.backend_tokenizer)
    other.add_tokens(["zzzextra"])
    with pytest.raises(ValueError, match="different vocabularies.*token_alignment"):
        lrt.paired_token_activations(source, target._replace(tokenizer=other), TEXTS[:2], ["layers.0.resid_post"],
                                     ["layers.0.resid_post"])


def test_summary_rows_and_table_from_hand_made_results():
    alphas = [0.0, 1.0]
    native = [[0.0, 0.0], [2.0, 4.0]]  # shift 3 nats
    results = {
        "config": {"alphas": alphas},
        "attributes": {"sentiment": {"targets": {"large": {
            "propensity": {"native": native},
            "relative_shift": {"native": [np.nan, 1.0], "transferred_linear": [np.nan, 0.8],
                               "transferred_affine": [np.nan, 0.5], "random": [np.nan, 0.05],
                               "unmapped": [np.nan, 0.2]},
            "pearson": {"transferred_linear": [np.nan, 0.9]},
            "cosine_with_native": {"transferred_linear": 0.7},
        }}}},
    }
    (row,) = lrt.summary_rows(results)
    assert row["native_shift"] == pytest.approx(3.0)
    assert row["steers"] and row["passes"]
    table = lrt.format_table([row])
    assert "| sentiment | large | 3.00 | 80% | 50% | 5% | 20% | 0.90 | 0.70 | yes |" in table


def test_report_table_shows_no_ratios_over_a_native_shift_below_the_threshold():
    from lrt_jax.lrt.report import STEERS_THRESHOLD, format_table

    base = {"attribute": "sentiment", "pearson_linear": 0.5, "cos_linear": 0.9, "passes": False,
            "rel_transferred_linear": 5.75, "rel_transferred_affine": -8.8, "rel_random": 0.4, "rel_unmapped": 1.0}
    rows = [{**base, "target": "large", "native_shift": 2 * STEERS_THRESHOLD, "steers": True},
            {**base, "target": "moe", "native_shift": 0.1 * STEERS_THRESHOLD, "steers": False}]
    steering_line, quiet_line = format_table(rows).splitlines()[2:4]
    assert "| 575% | -880% | 40% | 100% |" in steering_line
    assert "| — | — | — | — |" in quiet_line and "native does not steer" in quiet_line
    assert "%" not in quiet_line
    assert f"less than {STEERS_THRESHOLD:g} nats" in format_table(rows)
