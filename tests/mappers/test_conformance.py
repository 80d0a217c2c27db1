"""Every public mapper and transform is a pure, traceable pair of functions.

For each factory: ``jax.jit(fit)`` equals the eager fit, ``jax.vmap(fit)`` over
3 stacked ``(x, y)`` pairs equals 3 separate fits, ``jax.grad`` through
``apply`` equals the linear part (affine maps) or a central finite difference
(the MLP), and a traced fit on NaN input raises through ``checked_fit``.
Run in float64 so the comparisons can be tight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from lrt_jax import mappers
from conftest import paired_data

_ALPHAS = [0.01, 1.0, 100.0]
FACTORIES = {
    "lstsq": lambda: mappers.lstsq(),
    "ridge": lambda: mappers.ridge(1.0),
    "ridge_gcv": lambda: mappers.ridge(alphas=_ALPHAS, select="gcv"),
    "ridge_loo": lambda: mappers.ridge(alphas=_ALPHAS, select="loo"),
    "ridge_kfold": lambda: mappers.ridge(alphas=_ALPHAS, select="kfold", folds=3),
    "ridge_per_target": lambda: mappers.ridge(alphas=_ALPHAS, alpha_per_target=True),
    "procrustes": lambda: mappers.procrustes(scale=True),
    "reduced_rank": lambda: mappers.reduced_rank(2, 0.1),
    "cca": lambda: mappers.cca(2, 0.1),
    "gradient_affine": lambda: mappers.gradient(steps=5, batch_size=None),
    "gradient_mlp": lambda: mappers.gradient("mlp", steps=5, batch_size=None, hidden=8),
    "center": lambda: mappers.center(),
    "standardize": lambda: mappers.standardize(),
    "pca": lambda: mappers.pca(3),
    "whiten": lambda: mappers.whiten(),
    "chain": lambda: mappers.chain(mappers.center(), mappers.pca(4), mappers.ridge(1.0)),
}


def _data(seed=0):
    x, y = paired_data(n=48, d_s=6, d_t=5, seed=seed)
    return jnp.asarray(x), jnp.asarray(y)


def _assert_trees_close(actual, expected, rtol=1e-7, atol=1e-9):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


@pytest.fixture(params=sorted(FACTORIES))
def mapper(request, x64):
    return FACTORIES[request.param]()


def test_jit_fit_equals_eager_fit(mapper):
    x, y = _data()
    _assert_trees_close(jax.jit(mapper.fit)(x, y), mapper.fit(x, y))


def test_vmap_fit_equals_separate_fits(mapper):
    pairs = [_data(seed) for seed in range(3)]
    xs, ys = (jnp.stack(parts) for parts in zip(*pairs))
    batched = jax.vmap(mapper.fit)(xs, ys)
    for index, (x, y) in enumerate(pairs):
        _assert_trees_close(jax.tree.map(lambda leaf: leaf[index], batched),
                            mapper.fit(x, y))


def test_grad_through_apply(mapper):
    x, y = _data()
    state = mapper.fit(x, y)
    probe = jnp.asarray(np.random.default_rng(1).standard_normal(
        mapper.apply(state, x).shape))

    def scalar(inputs):
        return jnp.sum(mapper.apply(state, inputs) * probe)

    grad = jax.grad(scalar)(x)
    if hasattr(state, "affine_parts"):
        expected = probe @ mappers.linear(state).T
    else:
        step = 1e-6
        basis = np.zeros(x.size)
        expected = np.empty(x.size)
        for i in range(x.size):
            basis[i] = step
            shift = jnp.asarray(basis.reshape(x.shape))
            expected[i] = (scalar(x + shift) - scalar(x - shift)) / (2 * step)
            basis[i] = 0.0
        expected = expected.reshape(x.shape)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected),
                               rtol=1e-6, atol=1e-8)


def test_traced_fit_on_nonfinite_input_raises_through_checked_fit(mapper):
    x, y = _data()
    x = x.at[3, 1].set(jnp.nan)
    with pytest.raises(checkify.JaxRuntimeError, match="NaN or Inf"):
        mappers.checked_fit(jax.jit(mapper.fit))(x, y)


def test_checked_fit_of_vmapped_fit_passes_on_finite_input(x64):
    mapper = mappers.ridge(alphas=_ALPHAS)
    xs, ys = (jnp.stack(parts) for parts in zip(*[_data(seed) for seed in range(3)]))
    state = mappers.checked_fit(jax.jit(jax.vmap(mapper.fit)))(xs, ys)
    assert state.weight.shape == (3, 6, 5)


def test_traced_cca_without_enough_rows_raises_through_checked_fit(x64):
    x, y = paired_data(n=5, d_s=6, d_t=5)
    with pytest.raises(checkify.JaxRuntimeError, match="needs more rows"):
        mappers.checked_fit(jax.jit(mappers.cca(2).fit))(x, y)


def test_eager_nonfinite_message_is_unchanged(x64):
    x, y = _data()
    x = x.at[3, 1].set(jnp.inf)
    with pytest.raises(ValueError, match=r"x has 1 of 48 rows with NaN or Inf"
                                         r" \(first at row 3\)"):
        mappers.ridge(1.0).fit(x, y)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", ["ridge", "ridge_gcv", "ridge_loo", "cca",
                                  "standardize", "chain", "gradient_affine"])
def test_half_precision_inputs_equal_float32_fit_of_the_upcast_values(name, dtype):
    x, y = paired_data(n=48, d_s=6, d_t=5)
    x_half, y_half = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    mapper = FACTORIES[name]()
    state = mapper.fit(x_half, y_half)
    expected = mapper.fit(x_half.astype(jnp.float32), y_half.astype(jnp.float32))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state))
    _assert_trees_close(state, expected, rtol=1e-6, atol=1e-6)
    # apply returns the input's dtype: the float32 prediction rounded once (tests/mappers/test_low_precision.py).
    np.testing.assert_allclose(np.asarray(mapper.apply(state, x_half), np.float32),
                               np.asarray(mapper.apply(expected, x_half.astype(jnp.float32)).astype(dtype), np.float32),
                               rtol=1e-6, atol=1e-5)
