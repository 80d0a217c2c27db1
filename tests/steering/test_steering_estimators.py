"""Estimators against NumPy hand computations, scikit-learn PCA and LogisticRegression."""

import jax
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from lrt_jax import steering


def _paired_activations(seed=0, n=64, d=12):
    rng = np.random.default_rng(seed)
    shift = rng.normal(size=d) * 3.0
    acts_neg = rng.normal(size=(n, d)).astype(np.float32)
    acts_pos = (acts_neg + shift + rng.normal(size=(n, d)) * np.linspace(0.2, 2.0, d)).astype(np.float32)
    return acts_pos, acts_neg


def test_diff_of_means_equals_numpy_and_records_its_provenance():
    acts_pos, acts_neg = _paired_activations()
    vector = steering.diff_of_means(acts_pos, acts_neg[:50], model="tiny", site="layers.1.resid_post",
                                    position_rule="last_token", dataset="pairs.json")
    np.testing.assert_allclose(vector.vector, acts_pos.mean(axis=0) - acts_neg[:50].mean(axis=0),
                               rtol=1e-5, atol=1e-5)
    assert vector.metadata == steering.VectorInfo(
        model="tiny", site="layers.1.resid_post", d_model=12, position_rule="last_token", estimator="diff_of_means",
        dataset="pairs.json", count=64, count_negative=50)


def test_estimators_trace_under_jit_and_vmap():
    acts_pos, acts_neg = _paired_activations()
    jitted = jax.jit(steering.diff_of_means)(acts_pos, acts_neg)
    assert jitted.metadata == steering.diff_of_means(acts_pos, acts_neg).metadata
    stacks = np.stack([acts_pos, acts_neg, acts_pos * 2]), np.stack([acts_neg, acts_pos, acts_neg])
    batched = jax.vmap(steering.diff_of_means)(*stacks)
    expected = stacks[0].mean(axis=1) - stacks[1].mean(axis=1)
    np.testing.assert_allclose(batched.vector, expected, rtol=1e-5, atol=1e-5)
    assert (batched.metadata.d_model, batched.metadata.count) == (12, 64)
    pca = jax.jit(lambda p, n: steering.pca_of_differences(p, n, 2, center=False))(acts_pos, acts_neg)
    np.testing.assert_allclose(pca.components.vector,
                               steering.pca_of_differences(acts_pos, acts_neg, 2, center=False).components.vector,
                               atol=1e-5)


def test_centered_pca_matches_sklearn():
    acts_pos, acts_neg = _paired_activations()
    result = steering.pca_of_differences(acts_pos, acts_neg, 3, center=True)
    reference = PCA(n_components=3).fit(acts_pos - acts_neg)
    full = PCA().fit(acts_pos - acts_neg)
    # Components agree up to sign; our sign is fixed by the mean difference.
    overlaps = np.abs(np.sum(np.asarray(result.components.vector) * reference.components_, axis=1))
    np.testing.assert_allclose(overlaps, 1.0, atol=1e-4)
    np.testing.assert_allclose(result.explained_variance, reference.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(
        result.explained_variance_ratio, full.explained_variance_ratio_[:3], rtol=1e-4
    )


def test_uncentered_pca_matches_numpy_svd_and_is_oriented_along_mean_difference():
    acts_pos, acts_neg = _paired_activations(seed=1)
    differences = (acts_pos - acts_neg).astype(np.float64)
    _, singular_values, right_vectors = np.linalg.svd(differences, full_matrices=False)
    mean_difference = differences.mean(axis=0)
    expected = right_vectors[:2] * np.sign(right_vectors[:2] @ mean_difference)[:, None]

    result = steering.pca_of_differences(acts_pos, acts_neg, 2, center=False, site="layers.2.resid_post")
    np.testing.assert_allclose(result.components.vector, expected, atol=1e-4)
    np.testing.assert_allclose(result.explained_variance, singular_values[:2] ** 2 / len(differences), rtol=1e-4)
    np.testing.assert_allclose(
        result.explained_variance_ratio, singular_values[:2] ** 2 / np.sum(singular_values**2), rtol=1e-4
    )
    assert np.all(np.asarray(result.components.vector) @ mean_difference > 0)
    first = result.component(0)
    np.testing.assert_array_equal(first.vector, result.components.vector[0])
    assert (first.metadata.estimator, first.metadata.site, first.metadata.count) == (
        "pca_of_differences(center=False)[0]", "layers.2.resid_post", 64)


def test_pca_requires_pairs_and_valid_k():
    acts_pos, acts_neg = _paired_activations()
    with pytest.raises(ValueError, match="paired rows"):
        steering.pca_of_differences(acts_pos, acts_neg[:10], 1, center=True)
    with pytest.raises(ValueError, match="k=13"):
        steering.pca_of_differences(acts_pos, acts_neg, 13, center=True)


def test_probe_recovers_planted_direction_and_matches_sklearn():
    rng = np.random.default_rng(2)
    n, d, l2 = 2000, 16, 1e-3
    planted = rng.normal(size=d)
    planted /= np.linalg.norm(planted)
    labels = rng.integers(0, 2, n)
    acts = (rng.normal(size=(n, d)) + np.outer(2 * labels - 1, planted) * 1.5 + 0.3).astype(np.float32)

    # optax's Adam bias correction mixes its int32 step count with floats.
    with jax.numpy_dtype_promotion("standard"):
        result = steering.probe_direction(acts, labels, l2=l2, steps=500)
    direction = np.asarray(result.direction.vector)
    assert result.direction.metadata.normalisation == "unit"
    assert (result.direction.metadata.count, result.direction.metadata.count_negative) == (
        labels.sum(), n - labels.sum())
    assert direction @ planted >= 0.99
    np.testing.assert_allclose(np.linalg.norm(direction), 1.0, rtol=1e-5)

    reference = LogisticRegression(C=1.0 / (n * l2), tol=1e-10, max_iter=10_000).fit(acts, labels)
    np.testing.assert_allclose(result.weights, reference.coef_[0], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(result.bias, reference.intercept_[0], rtol=2e-3, atol=2e-3)
    assert result.train_accuracy == pytest.approx(reference.score(acts, labels), abs=2 / n)


@pytest.mark.parametrize(
    "labels, message",
    [(np.zeros(8, int), "both classes"), (np.arange(8), "0/1"), (np.zeros(5, int), "one label per")],
)
def test_probe_rejects_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        steering.probe_direction(np.ones((8, 3), np.float32), labels)


def test_nan_and_width_mismatch_are_rejected_with_a_fix():
    acts_pos, acts_neg = _paired_activations()
    poisoned = acts_pos.copy()
    poisoned[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        steering.diff_of_means(poisoned, acts_neg)
    with pytest.raises(ValueError, match="same site"):
        steering.diff_of_means(acts_pos, acts_neg[:, :5])
    with pytest.raises(ValueError, match=r"\[n, d_model\]"):
        steering.diff_of_means(acts_pos[None], acts_neg)
