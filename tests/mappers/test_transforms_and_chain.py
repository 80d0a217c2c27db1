"""Pre-transforms against scikit-learn, and chains as one affine map."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import as_dtype, paired_data, relative_error
from lrt_jax import mappers


def test_center_and_standardize_match_sklearn(precision):
    x, _ = paired_data()
    x[:, 3] = 7.0
    (xs,) = as_dtype(precision, x)
    centered = mappers.center()
    assert relative_error(centered.apply(centered.fit(xs), xs), x - x.mean(0)) <= precision.rtol
    scaler = mappers.standardize()
    expected = StandardScaler().fit_transform(x)
    assert relative_error(scaler.apply(scaler.fit(xs), xs), expected) <= precision.rtol


def test_pca_matches_sklearn_up_to_sign(precision):
    x, _ = paired_data(d_s=10)
    reference = PCA(n_components=4).fit(x)
    mapper = mappers.pca(4)
    state = mapper.fit(*as_dtype(precision, x))
    ours, theirs = np.asarray(state.matrix, np.float64), reference.components_.T
    signs = np.sign(np.sum(ours * theirs, axis=0))
    assert relative_error(ours * signs, theirs) <= precision.rtol
    n = len(x)
    assert relative_error(state.variances, reference.explained_variance_ * (n - 1) / n) <= precision.rtol


def test_whiten_gives_identity_covariance(x64):
    x, _ = paired_data(d_s=8)
    mapper = mappers.whiten(epsilon=0.0)
    white = np.asarray(mapper.apply(mapper.fit(x), x))
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(8), atol=1e-9)
    covariance = np.cov(x.T, bias=True)
    values, vectors = np.linalg.eigh(covariance)
    zca = vectors @ np.diag(values ** -0.5) @ vectors.T
    assert relative_error(mapper.fit(x).matrix, zca) <= 1e-9


def test_chain_matches_sklearn_pipeline(precision):
    x, y = paired_data(d_s=10)
    pipeline = make_pipeline(StandardScaler(), PCA(6), Ridge(alpha=2.0)).fit(x, y)
    mapper = mappers.chain(mappers.standardize(), mappers.pca(6), mappers.ridge(2.0))
    xs, ys = as_dtype(precision, x, y)
    state = mapper.fit(xs, ys)
    assert relative_error(mapper.apply(state, xs), pipeline.predict(x)) <= precision.rtol


@pytest.mark.parametrize("stages", [
    (mappers.center(), mappers.lstsq()),
    (mappers.standardize(), mappers.pca(5), mappers.ridge(1.0)),
    (mappers.whiten(), mappers.procrustes(scale=True)),
    (mappers.standardize(), mappers.reduced_rank(2)),
], ids=["center-lstsq", "standardize-pca-ridge", "whiten-procrustes", "standardize-rrr"])
def test_linear_and_bias_of_a_chain_are_the_whole_map(x64, stages):
    x, y = paired_data(d_s=8, d_t=5)
    mapper = mappers.chain(*stages)
    state = mapper.fit(x, y)
    weight, offset = mappers.linear(state), mappers.bias(state)
    assert weight.shape == (8, 5) and offset.shape == (5,)
    assert relative_error(x @ np.asarray(weight) + np.asarray(offset),
                          mapper.apply(state, x)) <= 1e-10


def test_chain_of_stats_equals_chain_of_rows(x64):
    x, y = paired_data(d_s=8, d_t=5)
    mapper = mappers.chain(mappers.whiten(), mappers.pca(4), mappers.ridge(0.3))
    stats = mappers.accumulate_stats(mappers.init_stats(8, 5, dtype=np.float64), x, y)
    assert relative_error(mappers.linear(mapper.fit_from_stats(stats)),
                          mappers.linear(mapper.fit(x, y))) <= 1e-7


def test_chain_with_a_gradient_stage_has_no_stats_path():
    assert mappers.chain(mappers.center(), mappers.gradient(steps=1)).fit_from_stats is None
