"""The LRT experiment's cost of steering: steered_kl against a loop of forward passes; the report's KL column."""

import jax
import numpy as np
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
    assert got.shape == (2, 3)
    expected = np.zeros((2, 3))
    for prompt in prompts:
        ids = np.asarray(target.tokenizer(prompt)["input_ids"])[None]
        base = log_softmax(np.asarray(lrt_jax.forward(target, ids), np.float64)[0], axis=-1)
        for k in range(2):
            for a, alpha in enumerate(alphas):
                steer = lrt_jax.Add(site, vectors[k], float(alpha), normalize="residual")
                logp = log_softmax(np.asarray(lrt_jax.forward(target, ids, interventions=steer), np.float64)[0], axis=-1)
                expected[k, a] += np.mean(np.sum(np.exp(logp) * (logp - base), axis=-1)) / len(prompts)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got[:, 0], 0.0, atol=1e-6)


def test_report_table_shows_native_kl_at_max_alpha():
    kinds = lrt.experiment.VECTOR_KINDS
    results = {
        "config": {"alphas": [0.0, 1.0]},
        "attributes": {"sentiment": {"targets": {"large": {
            "propensity": {"native": [[0.0, 0.0], [2.0, 4.0]]},
            "relative_shift": {kind: [np.nan, 0.5] for kind in kinds},
            "pearson": {"transferred_linear": [np.nan, 0.9]},
            "cosine_with_native": {"transferred_linear": 0.7},
            "cost": {kind: [0.0, 0.125 * (i + 1)] for i, kind in enumerate(kinds)},
        }}}},
    }
    (row,) = lrt.summary_rows(results)
    assert row["kl_native"] == 0.125 and row["kl_random"] == 0.5
    table = lrt.format_table([row])
    assert "KL at max α |" in table.splitlines()[0]
    assert table.splitlines()[2].endswith("| 0.70 | no | 0.125 |")
    old = {key: value for key, value in row.items() if not key.startswith("kl_")}  # results from before "cost"
    assert lrt.format_table([old]).splitlines()[2].endswith("| no | n/a |")
