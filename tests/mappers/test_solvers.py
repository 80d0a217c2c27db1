"""Procrustes, reduced-rank ridge and CCA against SciPy, NumPy and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from sklearn.cross_decomposition import CCA
from sklearn.linear_model import Ridge

from conftest import as_dtype, paired_data, relative_error
from lrt_jax import mappers


def test_procrustes_matches_scipy(precision):
    x, y = paired_data(d_s=9, d_t=9)
    xc, yc = x - x.mean(0), y - y.mean(0)
    rotation, _ = scipy.linalg.orthogonal_procrustes(xc, yc)
    state = mappers.procrustes().fit(*as_dtype(precision, x, y))
    assert relative_error(state.weight, rotation) <= precision.rtol
    assert relative_error(state.bias, y.mean(0) - x.mean(0) @ rotation) <= precision.rtol


def test_procrustes_with_scale_matches_closed_form(x64):
    x, y = paired_data(d_s=9, d_t=9)
    xc, yc = x - x.mean(0), y - y.mean(0)
    rotation, singular_sum = scipy.linalg.orthogonal_procrustes(xc, yc)
    state = mappers.procrustes(scale=True).fit(x, y)
    expected = rotation * singular_sum / np.sum(xc ** 2)
    assert relative_error(state.weight, expected) <= 1e-9


@pytest.mark.parametrize("d_s, d_t", [(6, 11), (11, 6)])
def test_procrustes_is_semi_orthogonal_when_widths_differ(x64, d_s, d_t):
    x, y = paired_data(d_s=d_s, d_t=d_t)
    weight = np.asarray(mappers.procrustes().fit(x, y).weight)
    gram = weight @ weight.T if d_s <= d_t else weight.T @ weight
    np.testing.assert_allclose(gram, np.eye(min(d_s, d_t)), atol=1e-10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    u, _, vt = np.linalg.svd(xc.T @ yc, full_matrices=False)
    assert relative_error(weight, u @ vt) <= 1e-9


@pytest.mark.parametrize("alpha", [0.0, 5.0])
def test_reduced_rank_is_ridge_projected_on_fitted_singular_vectors(precision, alpha):
    x, y = paired_data(n=300, d_s=10, d_t=8, noise=2.0)
    rank = 3
    if alpha:
        ridge_weight = Ridge(alpha=alpha).fit(x, y).coef_.T
    else:
        ridge_weight = np.linalg.lstsq(x - x.mean(0), y - y.mean(0), rcond=None)[0]
    fitted = (x - x.mean(0)) @ ridge_weight
    components = np.linalg.svd(fitted, full_matrices=False)[2][:rank].T
    expected = ridge_weight @ components @ components.T
    state = mappers.reduced_rank(rank, alpha).fit(*as_dtype(precision, x, y))
    assert relative_error(state.weight, expected) <= precision.rtol
    assert relative_error(state.bias, y.mean(0) - x.mean(0) @ expected) <= precision.rtol
    assert np.linalg.matrix_rank(np.asarray(state.weight, np.float64), tol=1e-3) == rank


def _unit_columns(a):
    a = np.asarray(a, np.float64)
    a = a / np.linalg.norm(a, axis=0)
    return a * np.sign(a[np.abs(a).argmax(0), np.arange(a.shape[1])])


def test_cca_matches_sklearn_up_to_sign(precision):
    x, y = paired_data(n=500, d_s=6, d_t=5, noise=3.0)
    k = 3
    reference = CCA(n_components=k, max_iter=5000, tol=1e-14).fit(x, y)
    x_scores, y_scores = reference.transform(x, y)
    state = mappers.cca(k).fit(*as_dtype(precision, x, y))
    ours_x = (x - x.mean(0)) @ np.asarray(state.x_weights, np.float64)
    ours_y = (y - y.mean(0)) @ np.asarray(state.y_weights, np.float64)
    assert relative_error(_unit_columns(ours_x), _unit_columns(x_scores)) <= precision.rtol
    assert relative_error(_unit_columns(ours_y), _unit_columns(y_scores)) <= precision.rtol
    sklearn_correlations = [np.corrcoef(x_scores[:, i], y_scores[:, i])[0, 1]
                            for i in range(k)]
    assert relative_error(state.correlations, sklearn_correlations) <= precision.rtol


def test_cca_map_regresses_y_on_canonical_variates(x64):
    x, y = paired_data(n=400, d_s=6, d_t=5, noise=3.0)
    state = mappers.cca(2).fit(x, y)
    variates = (x - x.mean(0)) @ np.asarray(state.x_weights)
    np.testing.assert_allclose(np.cov(variates.T, bias=True), np.eye(2), atol=1e-10)
    coefficients = np.linalg.lstsq(np.c_[variates, np.ones(len(x))], y, rcond=None)[0]
    expected = np.c_[variates, np.ones(len(x))] @ coefficients
    assert relative_error(mappers.cca(2).apply(state, x), expected) <= 1e-9
