"""A read direction (probe) moves through W⁺, a write direction (steering vector) through W.

References: NumPy's pseudo-inverse and the source probe's own scores on the same rows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrt_jax import mappers, steering

RNG = np.random.default_rng(0)
D_S, D_T, N = 6, 10, 200
W = RNG.normal(size=(D_S, D_T)).astype(np.float32)   # full row rank
B = RNG.normal(size=D_T).astype(np.float32)
H_S = RNG.normal(size=(N, D_S)).astype(np.float32)
H_T = H_S @ W + B
PROBE = RNG.normal(size=D_S).astype(np.float32)
INTERCEPT = 0.3


def test_transferred_probe_reproduces_the_source_scores_and_equals_numpy_pinv():
    probe = steering.transfer_probe(PROBE, (jnp.asarray(W), jnp.asarray(B)), bias=INTERCEPT)
    expected = np.linalg.pinv(W.astype(np.float64)) @ PROBE
    np.testing.assert_allclose(probe.weights, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probe.bias, INTERCEPT - B @ expected, rtol=1e-4, atol=1e-5)
    source_scores = H_S @ PROBE + INTERCEPT
    np.testing.assert_allclose(H_T @ np.asarray(probe.weights) + float(probe.bias), source_scores, atol=1e-3)
    # the write rule (w W) is not a probe of the target: its scores do not follow the source's
    naive = H_T @ (PROBE @ W)
    assert np.corrcoef(naive, source_scores)[0, 1] < 0.99
    assert np.max(np.abs(naive - source_scores)) > 1.0


def test_read_and_write_rules_agree_for_an_orthogonal_map():
    q, _ = np.linalg.qr(RNG.normal(size=(D_S, D_S)))
    probe = steering.transfer_probe(PROBE, (jnp.asarray(q, jnp.float32), jnp.zeros(D_S)))
    np.testing.assert_allclose(probe.weights, PROBE @ q, atol=1e-5)


def test_probe_result_through_a_fitted_map_under_jit():
    labels = (H_S @ PROBE > 0).astype(np.int32)
    fitted = steering.probe_direction(jnp.asarray(H_S), labels, l2=1e-3)
    state = mappers.lstsq().fit(jnp.asarray(H_S), jnp.asarray(H_T))
    eager = steering.transfer_probe(fitted, state)
    jitted = jax.jit(steering.transfer_probe)(fitted, state)
    np.testing.assert_allclose(jitted.weights, eager.weights, rtol=1e-5, atol=1e-6)
    target_accuracy = np.mean((H_T @ np.asarray(eager.weights) + float(eager.bias) > 0) == labels)
    assert target_accuracy == pytest.approx(fitted.train_accuracy, abs=0.01)


def test_a_probe_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match=r"shape \(4,\).*reads width 6"):
        steering.transfer_probe(np.ones(4, np.float32), (jnp.asarray(W), jnp.asarray(B)))
