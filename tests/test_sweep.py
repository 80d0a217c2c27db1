"""Sweeps: one vmapped call over intervention settings equals a loop of separate calls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax import generate
from lrt_jax.interventions import Add, Mix
from lrt_jax.loading import load
from lrt_jax import sweep

SITE = "layers.1.resid_post"


@pytest.fixture
def lm(tiny_hf_checkpoint):
    return load(tiny_hf_checkpoint("llama"))


@pytest.fixture
def batch():
    tokens = np.random.default_rng(0).integers(2, 150, (2, 6)).astype(np.int32)
    mask = np.ones(tokens.shape, bool)
    mask[1, :2] = False
    return np.where(mask, tokens, 0), mask


def test_vmapped_alpha_sweep_equals_a_loop(lm, batch):
    tokens, mask = batch
    vector = np.random.default_rng(1).normal(size=lm.config.d_model).astype(np.float32)
    alphas = np.linspace(-4.0, 4.0, 16, dtype=np.float32)
    loop = np.stack([lrt_jax.forward(lm, tokens, attention_mask=mask, interventions=Add(SITE, vector, float(a)))
                     for a in alphas])

    def run(intervention):
        return lrt_jax.forward(lm, tokens, attention_mask=mask, interventions=intervention)

    swept = sweep(run, [Add(SITE, vector, float(a)) for a in alphas])
    vmapped = jax.vmap(lambda a: run(Add(SITE, vector, a)))(jnp.asarray(alphas))
    assert swept.shape == (16, *tokens.shape, lm.config.vocab_size)
    np.testing.assert_allclose(np.asarray(swept)[:, mask], loop[:, mask], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(vmapped)[:, mask], loop[:, mask], atol=1e-5, rtol=0)
    assert np.ptp(loop[:, mask], axis=0).max() > 1e-2  # different alphas give different logits


def test_sweep_over_stacked_vectors_and_several_interventions(lm, batch):
    tokens, mask = batch
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(3, lm.config.d_model)).astype(np.float32)
    values = rng.normal(size=(lm.config.d_model,)).astype(np.float32)
    settings = [(Add(SITE, v, 2.0), Mix("layers.0.resid_post", values, beta)) for v, beta in zip(vectors, (0.1, 0.2, 0.3))]
    swept = sweep(lambda ivs: lrt_jax.capture(lm, tokens, "logits", attention_mask=mask, interventions=ivs), settings)
    for index, setting in enumerate(settings):
        single = lrt_jax.capture(lm, tokens, "logits", attention_mask=mask, interventions=setting)["logits"]
        np.testing.assert_allclose(np.asarray(swept["logits"][index])[mask], np.asarray(single)[mask], atol=1e-5)


def test_sweep_over_generation(lm, batch):
    tokens, mask = batch
    vector = 3.0 * np.random.default_rng(3).normal(size=lm.config.d_model).astype(np.float32)
    settings = [Add(SITE, vector, a, positions="generated") for a in (0.0, 1.0, 2.0)]

    def run(intervention):
        return generate(lm, tokens, attention_mask=mask, max_new_tokens=5, interventions=intervention).tokens

    loop = np.stack([run(setting) for setting in settings])
    np.testing.assert_array_equal(np.asarray(sweep(run, settings)), loop)
    assert (loop[0] != loop[2]).any()


def test_sweep_rejects_settings_of_different_structure(lm, batch):
    vector = np.ones(lm.config.d_model, np.float32)
    with pytest.raises(ValueError, match="Setting 1 differs"):
        sweep(lambda iv: iv, [Add(SITE, vector, 1.0), Add(SITE, vector, 1.0, positions="last")])
