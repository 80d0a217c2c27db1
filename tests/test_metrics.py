"""Metrics against scikit-learn, SciPy and hand-written NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from sklearn.metrics import r2_score
from sklearn.neighbors import NearestNeighbors

from lrt_jax import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 8)).astype(np.float32)
    y = (x @ rng.standard_normal((8, 5)) + 0.7 * rng.standard_normal((120, 5)) + 3).astype(np.float32)
    return x, y


def test_r2_matches_sklearn(pair):
    _, y = pair
    y_hat = y + np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    assert float(metrics.r2_score(y, y_hat)) == pytest.approx(
        r2_score(y, y_hat, multioutput="variance_weighted"), rel=1e-5)
    np.testing.assert_allclose(metrics.r2_score(y, y_hat, per_dimension=True),
                               r2_score(y, y_hat, multioutput="raw_values"), rtol=1e-5)


def test_mean_cosine(pair):
    x, y = pair
    a, b = y, y[::-1]
    expected = np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
    assert float(metrics.mean_cosine_similarity(a, b)) == pytest.approx(expected, rel=1e-5)


def test_linear_cka_matches_hsic_formula(pair):
    x, y = (a.astype(np.float64) for a in pair)
    n = len(x)
    centering = np.eye(n) - np.ones((n, n)) / n
    kx, ky = centering @ x @ x.T @ centering, centering @ y @ y.T @ centering
    expected = np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky))
    assert float(metrics.linear_cka(*pair)) == pytest.approx(expected, rel=1e-5)
    rotation = np.linalg.qr(np.random.default_rng(2).standard_normal((8, 8)))[0]
    assert float(metrics.linear_cka(x, 3 * x @ rotation)) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_mutual_knn_matches_sklearn_neighbours(pair, metric):
    x, y = pair
    k = 7

    def neighbours(a):
        model = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(a)
        return model.kneighbors(a, return_distance=False)[:, 1:]

    nx, ny = neighbours(x), neighbours(y)
    expected = np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny)])
    assert float(metrics.mutual_knn_overlap(x, y, k, metric=metric)) == pytest.approx(expected, abs=1e-6)
    assert float(metrics.mutual_knn_overlap(x, 2 * x, k, metric=metric)) == 1.0


def test_procrustes_distance_matches_scipy(pair):
    x, y = (a.astype(np.float64) for a in pair)
    xn = (x - x.mean(0)) / np.linalg.norm(x - x.mean(0))
    yn = (y - y.mean(0)) / np.linalg.norm(y - y.mean(0))
    padded = np.c_[yn, np.zeros((len(y), 3))]
    rotation, _ = scipy.linalg.orthogonal_procrustes(xn, padded)
    expected = np.sum((xn @ rotation - padded) ** 2)
    assert float(metrics.orthogonal_procrustes_distance(*pair)) == pytest.approx(expected, rel=1e-4)
    assert float(metrics.orthogonal_procrustes_distance(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_metrics_reject_mismatched_rows(pair):
    x, y = pair
    with pytest.raises(ValueError, match="same number of rows"):
        metrics.linear_cka(x, y[:-1])
    with pytest.raises(ValueError, match="same shape"):
        metrics.r2_score(y, y[:, :2])
    with pytest.raises(ValueError, match="k must be in"):
        metrics.mutual_knn_overlap(x, y, 120)
