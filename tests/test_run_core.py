"""``lrt_jax.run``, the one traceable core, against the checked entry points and under transforms.

References: the public ``forward``/``capture`` (themselves checked against HF PyTorch
in ``tests/models``), per-setting loops, and central finite differences.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax import Add

CONFIG = lrt_jax.ModelConfig("llama", 61, 16, 2, 4, 2, 4, 24)
SITE = "layers.0.resid_post"


@pytest.fixture(scope="module")
def lm():
    return lrt_jax.LM(CONFIG, lrt_jax.init_params(CONFIG, jax.random.key(0)))


@pytest.fixture(scope="module")
def batch():
    tokens = np.random.default_rng(0).integers(0, 61, (3, 6)).astype(np.int32)
    mask = np.ones((3, 6), bool)
    mask[0, :2] = False  # left padding
    mask[2, 5:] = False  # right padding
    return lrt_jax.Batch(tokens, mask)


def test_run_equals_forward_and_capture_on_a_padded_batch(lm, batch):
    vector = jnp.linspace(-1.0, 1.0, 16)
    steer = Add(SITE, vector, 2.0)
    logits, acts = lrt_jax.run(lm.config, lm.params, batch, interventions=steer, sites=(SITE, "final_norm"),
                               reduce="last")
    mask = batch.attention_mask
    ref_logits = lrt_jax.forward(lm, batch.tokens, attention_mask=mask, interventions=steer)
    ref_acts = lrt_jax.capture(lm, batch.tokens, [SITE, "final_norm"], attention_mask=mask, reduce="last",
                               interventions=steer)
    real = mask[..., None]
    np.testing.assert_allclose(np.where(real, logits, 0), np.where(real, ref_logits, 0), rtol=1e-5, atol=1e-5)
    assert list(acts) == [SITE, "final_norm"]
    for site in acts:
        assert acts[site].shape == (3, 16)
        np.testing.assert_allclose(acts[site], ref_acts[site], rtol=1e-5, atol=1e-6)


def test_run_accepts_a_batch_a_pair_or_bare_tokens(lm, batch):
    as_batch = lrt_jax.run(lm.config, lm.params, batch, sites=SITE).activations[SITE]
    as_pair = lrt_jax.run(lm.config, lm.params, (batch.tokens, batch.attention_mask), sites=SITE).activations[SITE]
    np.testing.assert_array_equal(as_batch, as_pair)
    bare = lrt_jax.run(lm.config, lm.params, batch.tokens[1:2]).logits
    np.testing.assert_allclose(bare, lrt_jax.forward(lm, batch.tokens[1:2]), rtol=1e-5, atol=1e-6)


def test_vmap_of_jitted_run_over_vectors_equals_a_loop_of_forwards(lm, batch):
    vectors = jax.random.normal(jax.random.key(1), (4, 16))

    @jax.jit
    def last_logits(vector):
        out = lrt_jax.run(lm.config, lm.params, batch, interventions=Add(SITE, vector, 3.0), sites="final_norm",
                          reduce="last")
        return out.activations["final_norm"]

    stacked = jax.vmap(last_logits)(vectors)
    for k in range(4):
        ref = lrt_jax.capture(lm, batch, "final_norm", reduce="last", interventions=Add(SITE, vectors[k], 3.0))
        np.testing.assert_allclose(stacked[k], ref["final_norm"], rtol=1e-5, atol=1e-5)


def test_grad_of_run_with_respect_to_params_equals_central_differences(lm, batch):
    leaves, treedef = jax.tree.flatten(lm.params)
    direction = jax.tree.unflatten(treedef, [jax.random.normal(jax.random.key(i), p.shape, p.dtype)
                                             for i, p in enumerate(leaves)])

    def loss(params):  # log-probability of token 3 summed over the real positions
        logits = lrt_jax.run(lm.config, params, batch).logits
        return jnp.sum(jnp.where(batch.attention_mask, jax.nn.log_softmax(logits)[..., 3], 0.0))

    grads = jax.jit(jax.grad(loss))(lm.params)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    eps = 1e-3

    def shifted(sign):
        return loss(jax.tree.map(lambda p, d: p + sign * eps * d, lm.params, direction))

    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    assert np.isfinite(float(analytic))
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=2e-2)


def test_forward_capture_and_generate_take_a_batch(lm, batch):
    np.testing.assert_array_equal(lrt_jax.forward(lm, batch),
                                  lrt_jax.forward(lm, batch.tokens, attention_mask=batch.attention_mask))
    left = lrt_jax.Batch(batch.tokens[:2], batch.attention_mask[:2])
    out = lrt_jax.generate(lm, left, max_new_tokens=3)
    ref = lrt_jax.generate(lm, left.tokens, attention_mask=left.attention_mask, max_new_tokens=3)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    with pytest.raises(ValueError, match="either a Batch or tokens"):
        lrt_jax.capture(lm, batch, SITE, attention_mask=batch.attention_mask)
