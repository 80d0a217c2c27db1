"""Gradient-trained maps reach the closed-form optimum; MLP maps are not affine."""

from __future__ import annotations

import numpy as np
import optax
import pytest

from conftest import paired_data
from lrt_jax import mappers


def _mse(mapper, state, x, y):
    return float(np.mean((np.asarray(mapper.apply(state, x)) - y) ** 2))


def test_affine_gradient_fit_is_within_one_percent_of_lstsq():
    x, y = paired_data(n=512, d_s=8, d_t=4, offset=1.0)
    x, y = x.astype(np.float32), y.astype(np.float32)
    closed = mappers.lstsq()
    trained = mappers.gradient("affine", "mse", optax.adam(0.05), steps=1500,
                               batch_size=None)
    best = _mse(closed, closed.fit(x, y), x, y)
    state = trained.fit(x, y)
    assert _mse(trained, state, x, y) <= 1.01 * best
    assert state.losses.shape == (1500,)
    assert state.losses[-1] < state.losses[0]


def test_minibatch_gradient_fit_is_within_one_percent_of_lstsq():
    x, y = paired_data(n=1024, d_s=8, d_t=4, offset=1.0)
    x, y = x.astype(np.float32), y.astype(np.float32)
    closed = mappers.lstsq()
    schedule = optax.cosine_decay_schedule(0.05, 3000)
    trained = mappers.gradient("affine", "mse", optax.adam(schedule), steps=3000,
                               batch_size=128)
    best = _mse(closed, closed.fit(x, y), x, y)
    assert _mse(trained, trained.fit(x, y), x, y) <= 1.01 * best


def test_cosine_and_callable_losses_train():
    x, y = paired_data(n=256, d_s=6, d_t=6)
    x, y = x.astype(np.float32), y.astype(np.float32)
    cosine = mappers.gradient(loss="cosine", optimizer=optax.adam(0.05), steps=300,
                              batch_size=None)
    state = cosine.fit(x, y)
    assert state.losses[-1] < 0.05
    huber = mappers.gradient(loss=lambda y_hat, y: optax.huber_loss(y_hat, y).mean(),
                             optimizer=optax.adam(0.05), steps=50, batch_size=None)
    assert huber.fit(x, y).losses[-1] < huber.fit(x, y).losses[0]


def test_mlp_fits_a_nonlinear_map_and_is_not_affine():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 4)).astype(np.float32)
    y = np.tanh(2 * x[:, :2]).astype(np.float32)
    mlp = mappers.gradient("mlp", optimizer=optax.adam(0.01), steps=800,
                           batch_size=None, hidden=64)
    state = mlp.fit(x, y)
    linear_fit = mappers.lstsq()
    assert _mse(mlp, state, x, y) < 0.3 * _mse(linear_fit, linear_fit.fit(x, y), x, y)
    with pytest.raises(mappers.NotAffineError, match="not an affine map"):
        mappers.linear(state)
    with pytest.raises(mappers.NotAffineError):
        mappers.bias(mappers.ChainState((state,)))
