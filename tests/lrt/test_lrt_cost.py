"""The LRT experiment's cost of steering: steered_kl against a loop of forward passes; the report's KL column."""

import jax
import numpy as np
import pytest
from scipy.special import log_softmax

import lrt_jax
from lrt_jax import lrt
from lrt_jax.lrt.experiment import steered_kl
from lrt_jax.organisms import probes


def test_steered_kl_equals_loop_of_steered_forward_passes(random_pair):
    _, target = random_pair
    prompts = probes.make_attribute_probe("sentiment", count=4, seed=3).prompts
    vectors = np.asarray(jax.random.normal(jax.random.key(2), (2, 48)))
    alphas = np.asarray([0.0, 0.5, 2.0], np.float32)
    site = "layers.1.resid_post"
    got = steered_kl(target, prompts, site, vectors, alphas)
    assert got.shape == (2, 3, 4)
    expected = np.zeros((2, 3, 4))
    for p, prompt in enumerate(prompts):
        ids = np.asarray(target.tokenizer(prompt)["input_ids"])[None]
        base = log_softmax(np.asarray(lrt_jax.forward(target, ids), np.float64)[0], axis=-1)
        for k in range(2):
            for a, alpha in enumerate(alphas):
                steer = lrt_jax.Add(site, vectors[k], float(alpha), normalize="residual")
                logp = log_softmax(np.asarray(lrt_jax.forward(target, ids, interventions=steer), np.float64)[0], axis=-1)
                expected[k, a, p] = np.mean(np.sum(np.exp(logp) * (logp - base), axis=-1))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got[:, 0], 0.0, atol=1e-6)


def test_report_table_shows_native_kl_at_max_alpha(hand_made_target):
    kinds = lrt.VECTOR_KINDS
    propensity = {kind: np.array([[0.0, 0.0], [2.0, 4.0]]) for kind in kinds}
    cost = {kind: np.array([[0.0, 0.0], [0.1 * (i + 1), 0.15 * (i + 1)]]) for i, kind in enumerate(kinds)}
    target = hand_made_target(propensity, [0.0, 1.0], cost=cost)
    np.testing.assert_allclose(target.cost("random"), [0.0, 0.5], rtol=1e-6)  # mean over prompts
    row = lrt.report.summary_row("sentiment", "large", target)
    assert row.kl["native"] == pytest.approx(0.125) and row.kl["random"] == pytest.approx(0.5)
    table = lrt.format_table([row])
    assert "KL at max α |" in table.splitlines()[0]
    assert table.splitlines()[2].endswith("| 0.70 | no | 0.125 |")
