"""fit_layer_pairs scores every source × target pair like a loop of single fits."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import paired_data
from lrt_jax import mappers, metrics


def _layers(count, seed, n=60, d_t=4):
    pairs = [paired_data(n=n, d_s=5, d_t=d_t, seed=seed + layer) for layer in range(count)]
    return [jnp.asarray(p[0]) for p in pairs], [jnp.asarray(p[1]) for p in pairs]


def test_r2_and_cka_matrices_equal_a_loop_of_single_fits(x64):
    xs, ys = _layers(2, seed=0)
    _, ys = _layers(3, seed=10)
    mapper = mappers.ridge(alphas=[0.1, 1.0, 10.0])
    train, test = slice(0, 40), slice(40, None)
    stack = lambda arrays, rows: jnp.stack([a[rows] for a in arrays])
    scores = mappers.fit_layer_pairs(mapper, stack(xs, train), stack(ys, train),
                                     stack(xs, test), stack(ys, test))
    assert scores.r2.shape == scores.cka.shape == (2, 3)
    assert scores.states.weight.shape == (2, 3, 5, 4)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            state = mapper.fit(x[train], y[train])
            np.testing.assert_allclose(
                scores.r2[i, j], metrics.r2_score(y[test], mapper.apply(state, x[test])),
                rtol=1e-9)
            np.testing.assert_allclose(scores.cka[i, j],
                                       metrics.linear_cka(x[test], y[test]), rtol=1e-9)


def test_fit_layer_pairs_needs_stacked_layers():
    x = jnp.ones((10, 3))
    with pytest.raises(ValueError, match=r"xs must be \[layers, n, d\]"):
        mappers.fit_layer_pairs(mappers.ridge(1.0), x, x[None], x[None], x[None])
