"""Bootstrap intervals, per-row mutual k-NN and substitution KL against NumPy / scikit-learn references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import r2_score as sklearn_r2
from sklearn.neighbors import NearestNeighbors

import lrt_jax
from lrt_jax import evaluation, metrics


def _data(n=60, d_y=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, d_y)).astype(np.float32)
    y_hat = (y + 0.5 * rng.normal(size=(n, d_y))).astype(np.float32)
    return y, y_hat


def _numpy_cka(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_bootstrap_draws_equal_a_python_loop_over_the_same_resamples():
    y, y_hat = _data()
    indices = evaluation.bootstrap_indices(jax.random.key(3), y.shape[0], 40)
    assert indices.shape == (40, 60) and indices.dtype == jnp.int32
    r2 = evaluation.bootstrap_statistic(metrics.r2_score, (y, y_hat), indices)
    cka = evaluation.bootstrap_statistic(metrics.linear_cka, (y_hat, y), indices, batch_size=7)
    loop_r2 = [sklearn_r2(y[idx], y_hat[idx], multioutput="variance_weighted") for idx in np.asarray(indices)]
    loop_cka = [_numpy_cka(y_hat[idx].astype(np.float64), y[idx].astype(np.float64)) for idx in np.asarray(indices)]
    np.testing.assert_allclose(r2, loop_r2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cka, loop_cka, rtol=1e-4)


def test_bootstrap_interval_is_the_percentiles_of_the_loop_and_brackets_the_value():
    y, y_hat = _data(seed=1)
    key = jax.random.key(7)
    interval = evaluation.bootstrap_interval(metrics.mean_cosine_similarity, (y, y_hat), key=key, n_resamples=200)
    indices = np.asarray(evaluation.bootstrap_indices(key, y.shape[0], 200))

    def cosine(a, b):
        return np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))

    loop = np.array([cosine(y[idx], y_hat[idx]) for idx in indices])
    np.testing.assert_allclose([interval.low, interval.high], np.percentile(loop, [2.5, 97.5]), rtol=1e-5)
    assert float(interval.value) == pytest.approx(cosine(y, y_hat), rel=1e-5)
    assert interval.low < interval.value < interval.high


def test_bootstrap_composes_with_vmap_over_a_batch_of_score_pairs():
    ys, y_hats = zip(*(_data(seed=s) for s in range(3)))
    ys, y_hats = np.stack(ys), np.stack(y_hats)
    indices = evaluation.bootstrap_indices(jax.random.key(0), 60, 30)
    batched = jax.jit(jax.vmap(lambda a, b: evaluation.bootstrap_statistic(metrics.r2_score, (a, b), indices)))
    draws = batched(ys, y_hats)
    for s in range(3):
        np.testing.assert_allclose(draws[s], evaluation.bootstrap_statistic(metrics.r2_score, (ys[s], y_hats[s]),
                                                                            indices), rtol=1e-5)


def test_mutual_knn_per_row_matches_sklearn_neighbours_and_averages_to_the_metric():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x @ rng.normal(size=(6, 4)) + 0.8 * rng.normal(size=(40, 4))).astype(np.float32)
    k = 5
    per_row = np.asarray(evaluation.mutual_knn_per_row(x, y, k))

    def neighbours(features):
        fitted = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(features)
        found = fitted.kneighbors(features, return_distance=False)
        return [set(row[row != i][:k]) for i, row in enumerate(found)]

    expected = [len(a & b) / k for a, b in zip(neighbours(x), neighbours(y))]
    np.testing.assert_allclose(per_row, expected)
    assert per_row.mean() == pytest.approx(float(metrics.mutual_knn_overlap(x, y, k)), rel=1e-6)


def test_mean_shift_ratio_is_the_ratio_of_means_per_attribute_averaged():
    shifted = np.array([[1.0, 2.0], [3.0, 2.0]], np.float32)
    reference = np.array([[2.0, 4.0], [2.0, 4.0]], np.float32)
    assert float(evaluation.mean_shift_ratio(shifted, reference)) == pytest.approx((2.0 / 2.0 + 2.0 / 4.0) / 2)


def test_bootstrap_refuses_mismatched_rows_and_a_bad_confidence():
    with pytest.raises(ValueError, match="leading row axis"):
        evaluation.bootstrap_statistic(jnp.mean, (np.zeros(3), np.zeros(4)), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="confidence"):
        evaluation.percentile_interval(jnp.zeros(4), 1.5)


def test_substituted_next_token_kl_equals_a_direct_forward_and_numpy_kl():
    config = lrt_jax.ModelConfig("llama", 50, 16, 2, 2, 1, 8, 32, max_position_embeddings=32)
    lm = lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(0)), None, "tiny")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, size=(3, 7)).astype(np.int32)
    mask = np.ones((3, 7), bool)
    mask[1, :2] = False  # left padding
    values = rng.normal(size=(2, 3, 7, 16)).astype(np.float32)
    site = "layers.0.resid_post"
    kl = np.asarray(evaluation.substituted_next_token_kl(config, lm.params, jnp.asarray(tokens), jnp.asarray(mask),
                                                         jnp.asarray(values), site=site))
    assert kl.shape == (2, 3)

    def log_softmax(logits):
        logits = np.asarray(logits, np.float64)
        return logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(
            -1, keepdims=True)

    original = log_softmax(lrt_jax.forward(lm, tokens, attention_mask=mask))
    for entry in range(2):
        replaced = log_softmax(lrt_jax.forward(lm, tokens, attention_mask=mask,
                                               interventions=lrt_jax.Replace(site, values[entry])))
        per_token = np.sum(np.exp(original) * (original - replaced), axis=-1)
        expected = [per_token[row][mask[row]].mean() for row in range(3)]
        np.testing.assert_allclose(kl[entry], expected, rtol=1e-4, atol=1e-6)
    assert np.all(kl > 0)
