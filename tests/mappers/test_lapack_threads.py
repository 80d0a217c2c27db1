"""The closed-form solvers run small decompositions on one BLAS thread, then restore it."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_info

from lrt_jax import mappers
from lrt_jax.mappers import _lapack


def _blas_threads():
    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()
            if pool["user_api"] == "blas"}


def test_single_threaded_limits_every_blas_and_restores_it():
    jnp.linalg.cholesky(jnp.eye(3)).block_until_ready()    # LAPACK loaded
    before = _blas_threads()
    assert before, "no BLAS library found by threadpoolctl"
    with _lapack.single_threaded():
        assert set(_blas_threads().values()) == {1}
    assert _blas_threads() == before
    with _lapack.single_threaded_below(_lapack._MULTITHREAD_FROM):
        assert _blas_threads() == before                   # large: left alone
    with _lapack.single_threaded_below(_lapack._MULTITHREAD_FROM - 1):
        assert set(_blas_threads().values()) == {1}


def test_run_decomposition_calls_under_the_limit_and_returns_the_result():
    jnp.linalg.cholesky(jnp.eye(3)).block_until_ready()    # LAPACK loaded
    before = _blas_threads()
    small = _lapack.run_decomposition(_lapack._MULTITHREAD_FROM - 1, lambda: set(_blas_threads().values()))
    large = _lapack.run_decomposition(_lapack._MULTITHREAD_FROM, _blas_threads)
    assert small == {1} and large == before and _blas_threads() == before
    gram = jnp.asarray([[4.0, 2.0], [2.0, 3.0]])
    np.testing.assert_allclose(_lapack.run_decomposition(2, jnp.linalg.cholesky, gram),
                               np.linalg.cholesky(np.asarray(gram)), rtol=1e-6)


def test_ridge_fit_leaves_thread_settings_and_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 20)).astype(np.float32)
    y = (x @ rng.standard_normal((20, 6)) + 0.1 * rng.standard_normal((300, 6))).astype(np.float32)
    before = _blas_threads()
    state = mappers.ridge(2.0).fit(x, y)
    assert _blas_threads() == before
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.solve(xc.T @ xc + 2.0 * np.eye(20), xc.T @ yc)
    np.testing.assert_allclose(np.asarray(mappers.linear(state)), expected, rtol=2e-4, atol=2e-5)
