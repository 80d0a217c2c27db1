"""LRT comparison statistics against scipy.stats.pearsonr and numpy.polyfit."""

import numpy as np
import pytest
import scipy.stats

from lrt_jax import steering

RNG = np.random.default_rng(0)
ALPHAS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0], np.float32)
NATIVE = (0.5 + 0.1 * ALPHAS[:, None] * RNG.uniform(0.5, 1.5, size=(1, 30)) + RNG.normal(size=(5, 30)) * 0.05)
NATIVE = NATIVE.astype(np.float32)
TRANSFERRED = (NATIVE * 0.8 + RNG.normal(size=(5, 30)) * 0.05).astype(np.float32)


def test_comparison_matches_scipy_and_polyfit():
    comparison = steering.compare_propensities(ALPHAS, NATIVE, TRANSFERRED)
    expected_pearson = [scipy.stats.pearsonr(NATIVE[a], TRANSFERRED[a]).statistic for a in range(5)]
    np.testing.assert_allclose(comparison.pearson, expected_pearson, rtol=1e-4)
    np.testing.assert_allclose(comparison.mse, np.mean((NATIVE - TRANSFERRED) ** 2, axis=1), rtol=1e-5)
    for propensities, slope in [(NATIVE, comparison.native_slope), (TRANSFERRED, comparison.transferred_slope)]:
        item_slopes = np.polyfit(ALPHAS, propensities, 1)[0]
        np.testing.assert_allclose(slope.item_slopes, item_slopes, rtol=1e-4, atol=1e-6)
        assert float(slope.mean_slope) == pytest.approx(np.polyfit(ALPHAS, propensities.mean(axis=1), 1)[0], rel=1e-4)


def test_constant_row_gives_nan_correlation():
    constant = NATIVE.copy()
    constant[2] = 0.5
    pearson = steering.pearson_per_alpha(constant, TRANSFERRED)
    assert np.isnan(pearson[2]) and np.isfinite(np.delete(np.asarray(pearson), 2)).all()


def test_shape_and_alpha_errors():
    with pytest.raises(ValueError, match="same items and alphas"):
        steering.mse_per_alpha(NATIVE, TRANSFERRED[:, :10])
    with pytest.raises(ValueError, match="one row per alpha"):
        steering.steerability_slope(ALPHAS[:3], NATIVE)
    with pytest.raises(ValueError, match="two distinct"):
        steering.steerability_slope(np.ones(5, np.float32), NATIVE)
