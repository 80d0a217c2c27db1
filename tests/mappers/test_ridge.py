"""Ridge and lstsq against scikit-learn and NumPy, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold

from conftest import as_dtype, paired_data, relative_error
from lrt_jax import mappers

ALPHAS = np.logspace(-2, 4, 10)


@pytest.mark.parametrize("alpha", [0.01, 3.0, 300.0])
def test_ridge_matches_sklearn_ridge(precision, alpha):
    x, y = paired_data()
    reference = Ridge(alpha=alpha).fit(x, y)
    state = mappers.ridge(alpha).fit(*as_dtype(precision, x, y))
    assert relative_error(mappers.linear(state), reference.coef_.T) <= precision.rtol
    assert relative_error(mappers.bias(state), reference.intercept_) <= precision.rtol


def test_ridge_without_intercept_matches_sklearn(precision):
    x, y = paired_data()
    reference = Ridge(alpha=2.0, fit_intercept=False).fit(x, y)
    state = mappers.ridge(2.0, fit_intercept=False).fit(*as_dtype(precision, x, y))
    assert relative_error(state.weight, reference.coef_.T) <= precision.rtol
    assert np.all(np.asarray(state.bias) == 0)


def test_lstsq_matches_numpy(precision):
    x, y = paired_data()
    reference = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]
    state = mappers.lstsq().fit(*as_dtype(precision, x, y))
    assert relative_error(state.weight, reference[:-1]) <= precision.rtol
    assert relative_error(state.bias, reference[-1]) <= precision.rtol


def test_loo_selection_is_sklearn_ridgecv(precision):
    x, y = paired_data(n=150, noise=4.0)
    reference = RidgeCV(alphas=ALPHAS).fit(x, y)
    state = mappers.ridge(alphas=ALPHAS, select="loo").fit(*as_dtype(precision, x, y))
    assert float(state.alpha) == pytest.approx(reference.alpha_)
    assert relative_error(state.weight, reference.coef_.T) <= precision.rtol
    assert relative_error(state.bias, reference.intercept_) <= precision.rtol
    best = np.asarray(state.selection_scores).mean(1).min()
    assert best == pytest.approx(-reference.best_score_, rel=precision.rtol)


def test_loo_per_target_alpha_is_sklearn(x64):
    x, y = paired_data(n=150, noise=4.0)
    y = y * np.logspace(-1, 1, y.shape[1])
    reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x, y)
    state = mappers.ridge(alphas=ALPHAS, select="loo", alpha_per_target=True).fit(x, y)
    np.testing.assert_allclose(state.alpha, reference.alpha_)
    assert relative_error(state.weight, reference.coef_.T) <= 1e-6


def _gcv_by_hat_matrix(x, y, alpha):
    """GCV from the explicit n×n hat matrix (with the intercept's 11ᵀ/n)."""
    n = len(x)
    xc = x - x.mean(0)
    hat = xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T)
    hat += np.ones((n, n)) / n
    rss = np.sum(((np.eye(n) - hat) @ y) ** 2, axis=0)
    return rss / n / (1 - np.trace(hat) / n) ** 2


def test_gcv_scores_match_hat_matrix_computation(precision):
    x, y = paired_data(n=150, noise=4.0)
    state = mappers.ridge(alphas=ALPHAS, select="gcv").fit(*as_dtype(precision, x, y))
    expected = np.stack([_gcv_by_hat_matrix(x, y, a) for a in ALPHAS])
    assert relative_error(state.selection_scores, expected) <= precision.rtol
    chosen = ALPHAS[np.argmin(expected.mean(1))]
    assert float(state.alpha) == pytest.approx(chosen)
    assert relative_error(state.weight, Ridge(alpha=chosen).fit(x, y).coef_.T) <= precision.rtol


def test_gcv_picks_the_same_alpha_as_sklearn_on_well_conditioned_data(x64):
    for seed in range(3):
        x, y = paired_data(n=300, noise=6.0, seed=seed)
        state = mappers.ridge(alphas=ALPHAS, select="gcv").fit(x, y)
        assert float(state.alpha) == pytest.approx(RidgeCV(alphas=ALPHAS).fit(x, y).alpha_)


def test_kfold_selection_matches_sklearn_gridsearch(precision):
    x, y = paired_data(n=200, noise=4.0)
    reference = RidgeCV(alphas=ALPHAS, cv=KFold(5),
                        scoring="neg_mean_squared_error").fit(x, y)
    state = mappers.ridge(alphas=ALPHAS, select="kfold", folds=5).fit(
        *as_dtype(precision, x, y))
    assert float(state.alpha) == pytest.approx(reference.alpha_)
    assert relative_error(state.weight, reference.coef_.T) <= precision.rtol
    best = np.asarray(state.selection_scores).mean(1).min()
    assert best == pytest.approx(-reference.best_score_, rel=precision.rtol)


def test_single_alpha_cost_and_grid_share_one_solution(x64):
    x, y = paired_data()
    grid_state = mappers.ridge(alphas=[5.0], select="gcv").fit(x, y)
    single_state = mappers.ridge(5.0).fit(x, y)
    assert relative_error(grid_state.weight, single_state.weight) <= 1e-10
