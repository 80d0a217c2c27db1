"""bf16/fp16 activations: every mapper fits them in float32 and applies in the input's dtype.

The contract (``lrt_jax.mappers._base``, "Precision"): a fit on half-precision rows is
the fit on the same values cast to float32 (statistics accumulate in float32, LAPACK
never sees a half-precision matrix), and ``apply`` computes in float32 and rounds once
to the input's dtype. Every factory that ``lrt_jax.mappers`` exports is covered (the
first test fails when a new one is added without a row here); ridge and lstsq are also
checked against a NumPy float64 solution of the same bf16 values.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrt_jax import mappers
from conftest import paired_data, relative_error

HALF_DTYPES = [jnp.bfloat16, jnp.float16]
# One or more configurations per exported factory; "chain" composes pre-transforms with a solver.
CONFIGURATIONS = {
    "lstsq": lambda: mappers.lstsq(),
    "ridge": lambda: mappers.ridge(1.0),
    "ridge_gcv": lambda: mappers.ridge(alphas=[0.01, 1.0, 100.0]),
    "ridge_loo": lambda: mappers.ridge(alphas=[0.01, 1.0, 100.0], select="loo"),
    "ridge_kfold": lambda: mappers.ridge(alphas=[0.01, 1.0, 100.0], select="kfold", folds=3),
    "procrustes": lambda: mappers.procrustes(scale=True),
    "reduced_rank": lambda: mappers.reduced_rank(2, 0.1),
    "cca": lambda: mappers.cca(2, 0.1),
    "gradient": lambda: mappers.gradient(steps=20, batch_size=None),
    "gradient_mlp": lambda: mappers.gradient("mlp", steps=20, batch_size=None, hidden=8),
    "center": lambda: mappers.center(),
    "standardize": lambda: mappers.standardize(),
    "pca": lambda: mappers.pca(3),
    "whiten": lambda: mappers.whiten(),
    "chain": lambda: mappers.chain(mappers.standardize(), mappers.pca(4), mappers.ridge(1.0)),
}


def exported_mapper_factories() -> set[str]:
    """Names in ``lrt_jax.mappers.__all__`` of functions annotated to return a ``Mapper``."""
    names = set()
    for name in mappers.__all__:
        obj = getattr(mappers, name)
        if inspect.isfunction(obj) and str(inspect.signature(obj).return_annotation).endswith("Mapper"):
            names.add(name)
    return names


def half_data(dtype, n=64, d_s=6, d_t=5, seed=0):
    """``(x, y)`` in ``dtype`` and the same values in float32."""
    x, y = paired_data(n=n, d_s=d_s, d_t=d_t, seed=seed)
    x_half, y_half = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    return x_half, y_half, x_half.astype(jnp.float32), y_half.astype(jnp.float32)


def assert_trees_close(actual, expected, rtol=1e-6, atol=1e-6):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=atol)


def test_every_exported_factory_has_a_configuration_here():
    covered = {name.split("_")[0] if name.split("_")[0] in {"ridge", "gradient"} else name
               for name in CONFIGURATIONS}
    assert exported_mapper_factories() == covered


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_half_precision_fit_equals_the_float32_fit_of_the_same_values(name, dtype):
    x_half, y_half, x32, y32 = half_data(dtype)
    mapper = CONFIGURATIONS[name]()
    state, expected = mapper.fit(x_half, y_half), mapper.fit(x32, y32)
    assert {leaf.dtype for leaf in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}
    assert_trees_close(state, expected)

    prediction = mapper.apply(state, x_half)
    assert prediction.dtype == jnp.dtype(dtype)
    reference = np.asarray(mapper.apply(expected, x32), np.float32)
    assert mapper.apply(expected, x32).dtype == jnp.float32
    # One rounding of the float32 result: within half an ulp of dtype, plus float32 noise.
    ulp = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(np.asarray(prediction, np.float32), reference, rtol=ulp, atol=ulp * 1e-2)


def numpy_ridge(x, y, alpha):
    """Ridge with an unpenalised intercept, in float64: ``W = (XcᵀXc + αI)⁻¹ XcᵀYc``, ``b = ȳ − x̄W``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    weight = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return weight, y.mean(0) - x.mean(0) @ weight


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_half_precision_ridge_and_lstsq_match_numpy_on_the_same_values(alpha, dtype):
    x_half, y_half, x32, y32 = half_data(dtype, n=300, d_s=12, d_t=7, seed=3)
    mapper = mappers.lstsq() if alpha == 0.0 else mappers.ridge(alpha)
    state = mapper.fit(x_half, y_half)
    weight, offset = numpy_ridge(x32, y32, alpha)
    # float32 solves of a Gram with condition number ~1e2: norm-wise error ~1e-5.
    assert relative_error(mappers.linear(state), weight) <= 1e-4
    assert relative_error(mappers.bias(state), offset) <= 1e-4
    prediction = np.asarray(mapper.apply(state, x_half), np.float64)
    expected = np.asarray(x32, np.float64) @ weight + offset
    ulp = float(jnp.finfo(dtype).eps)
    assert np.abs(prediction - expected).max() <= ulp * np.abs(expected).max()


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=["bfloat16", "float16"])
def test_streamed_half_precision_statistics_fit_like_the_float32_rows(dtype):
    x_half, y_half, x32, y32 = half_data(dtype, n=96)
    stats = mappers.init_stats(6, 5)
    for start in range(0, 96, 32):
        stats = mappers.accumulate_stats(stats, x_half[start:start + 32], y_half[start:start + 32])
    for mapper in (mappers.ridge(1.0), mappers.chain(mappers.center(), mappers.lstsq())):
        streamed, whole = mapper.fit_from_stats(stats), mapper.fit(x32, y32)
        # Same values, another summation order: float32 rounding only (bf16 sums would be off by ~1e-2).
        assert relative_error(mappers.linear(streamed), mappers.linear(whole)) <= 1e-4
        assert relative_error(mappers.bias(streamed), mappers.bias(whole)) <= 1e-4


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=["bfloat16", "float16"])
def test_half_precision_fit_under_jit_and_vmap(dtype):
    pairs = [half_data(dtype, seed=seed) for seed in range(3)]
    xs, ys = (jnp.stack([p[i] for p in pairs]) for i in (0, 1))
    mapper = mappers.ridge(alphas=[0.1, 1.0, 10.0])
    states = jax.jit(jax.vmap(mapper.fit))(xs, ys)
    for j, (_, _, x32, y32) in enumerate(pairs):
        assert_trees_close(jax.tree.map(lambda leaf: leaf[j], states), mapper.fit(x32, y32), rtol=1e-5, atol=1e-5)
    assert jax.jit(mapper.apply)(jax.tree.map(lambda leaf: leaf[0], states), xs[0]).dtype == jnp.dtype(dtype)


def test_a_chain_rounds_to_the_input_dtype_once_at_the_end():
    """Stages run in float32: rounding between them would lose the standardised values' precision."""
    x_half, y_half, x32, y32 = half_data(jnp.bfloat16)
    mapper = mappers.chain(mappers.standardize(), mappers.whiten(), mappers.ridge(1.0))
    state = mapper.fit(x_half, y_half)
    np.testing.assert_array_equal(np.asarray(mapper.apply(state, x_half), np.float32),
                                  np.asarray(mapper.apply(state, x32).astype(jnp.bfloat16), np.float32))
