"""Inputs at the core boundary: checks under a user's jit/grad, and errors that name the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax.interventions import Ablate, Add
from lrt_jax.steering import diff_of_means

CONFIG = lrt_jax.ModelConfig("llama", 97, 32, 2, 4, 2, 8, 48, max_position_embeddings=16)
SITE = "layers.1.resid_post"


@pytest.fixture(scope="module")
def lm():
    return lrt_jax.LM(CONFIG, lrt_jax.init_params(CONFIG, jax.random.key(0)))


TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 97, (2, 5)), jnp.int32)


def test_jit_of_forward_with_closed_over_tokens_equals_eager(lm):
    vector = jnp.linspace(-1.0, 1.0, 32)
    eager = lrt_jax.forward(lm, TOKENS, interventions=Add(SITE, vector, 1.0))
    jitted = jax.jit(lambda v: lrt_jax.forward(lm, TOKENS, interventions=Add(SITE, v, 1.0)))(vector)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)
    run = lambda: lrt_jax.capture(lm, TOKENS, [SITE], interventions=Add(SITE, vector, 1.0))[SITE]  # noqa: E731
    np.testing.assert_allclose(np.asarray(jax.jit(run)()), np.asarray(run()), atol=1e-5)


def test_jitted_grad_of_a_steered_logit_equals_central_differences(lm):
    def logit(v):
        return lrt_jax.forward(lm, TOKENS, interventions=Add("layers.0.resid_post", v, 1.0))[0, -1, 3]

    vector = jnp.asarray(np.random.default_rng(1).normal(size=32), jnp.float32)
    grad = np.asarray(jax.jit(jax.grad(logit))(vector))
    assert np.all(np.isfinite(grad))
    step = 1e-2
    for i in (0, 7, 31):
        basis = jnp.zeros(32).at[i].set(step)
        estimate = (float(logit(vector + basis)) - float(logit(vector - basis))) / (2 * step)
        np.testing.assert_allclose(grad[i], estimate, rtol=5e-2, atol=2e-3)


def test_generate_and_sweep_inside_jit_with_closed_over_tokens(lm):
    out = jax.jit(lambda: lrt_jax.generate(lm, TOKENS, max_new_tokens=3).tokens)()
    np.testing.assert_array_equal(np.asarray(out), np.asarray(lrt_jax.generate(lm, TOKENS, max_new_tokens=3).tokens))
    vector = jnp.ones(32)
    swept = lrt_jax.sweep(lambda iv: lrt_jax.forward(lm, TOKENS, interventions=iv),
                          [Add(SITE, vector, a) for a in (0.0, 2.0)])
    np.testing.assert_allclose(np.asarray(swept[1]),
                               np.asarray(lrt_jax.forward(lm, TOKENS, interventions=Add(SITE, vector, 2.0))), atol=1e-5)


@pytest.mark.parametrize("run", [lambda lm, t: lrt_jax.forward(lm, t), lambda lm, t: lrt_jax.capture(lm, t, [SITE])])
def test_sequence_longer_than_the_context_names_length_and_limit(lm, run):
    with pytest.raises(ValueError, match=r"sequence length 17 exceeds .* 16 positions \(max_position_embeddings\)"):
        run(lm, np.zeros((1, 17), np.int32))


@pytest.mark.parametrize("shape", [(0, 5), (2, 0)])
def test_empty_token_batch_is_refused(lm, shape):
    with pytest.raises(ValueError, match="batch is empty"):
        lrt_jax.forward(lm, np.zeros(shape, np.int32))


def test_mask_as_a_python_list_is_accepted(lm):
    mask = [[True] * 5, [False, True, True, True, True]]
    np.testing.assert_allclose(np.asarray(lrt_jax.forward(lm, TOKENS, attention_mask=mask)),
                               np.asarray(lrt_jax.forward(lm, TOKENS, attention_mask=np.asarray(mask))), atol=1e-6)


@pytest.mark.parametrize("normalize", ["unit", "residual"])
def test_add_of_a_zero_vector_with_normalize_is_refused(lm, normalize):
    with pytest.raises(ValueError, match="zero norm"):
        lrt_jax.forward(lm, TOKENS, interventions=Add(SITE, np.zeros(32), 1.0, normalize=normalize))


@pytest.mark.parametrize("intervention", [Add(SITE, np.full(32, np.inf), 1.0), Add(SITE, np.ones(32), np.inf),
                                          Ablate(SITE, np.r_[np.nan, np.ones(31)])])
def test_non_finite_arrays_and_strengths_are_refused(lm, intervention):
    with pytest.raises(ValueError, match="NaN or infinity"):
        lrt_jax.forward(lm, TOKENS, interventions=intervention)


def test_sweep_checks_each_concrete_setting_before_vmapping(lm):
    run = lambda iv: lrt_jax.forward(lm, TOKENS, interventions=iv)  # noqa: E731
    with pytest.raises(ValueError, match="Setting 1 .*NaN or infinity"):
        lrt_jax.sweep(run, [Add(SITE, np.ones(32), 1.0), Add(SITE, np.full(32, np.inf), 1.0)])
    with pytest.raises(ValueError, match=r"Setting 1 has an array of shape \(16,\).*share one width"):
        lrt_jax.sweep(run, [Add(SITE, np.ones(32), 1.0), Add(SITE, np.ones(16), 1.0)])


@pytest.mark.parametrize("alpha, error, words", [(None, TypeError, r"Add\('layers.1.resid_post'\).alpha"),
                                                 ("4", TypeError, r"alpha must be a real number"),
                                                 (1j, TypeError, r"alpha must be real-valued")])
def test_alpha_that_is_not_a_real_number_is_refused(lm, alpha, error, words):
    with pytest.raises(error, match=words):
        lrt_jax.forward(lm, TOKENS, interventions=Add(SITE, np.ones(32), alpha))


def test_complex_vector_is_refused(lm):
    with pytest.raises(TypeError, match=r"vector must be real-valued"):
        lrt_jax.forward(lm, TOKENS, interventions=Add(SITE, np.ones(32, np.complex64), 1.0))


def test_none_interventions_are_none_and_a_dict_is_refused(lm):
    np.testing.assert_array_equal(np.asarray(lrt_jax.forward(lm, TOKENS, interventions=None)),
                                  np.asarray(lrt_jax.forward(lm, TOKENS)))
    with pytest.raises(TypeError, match="interventions must be an intervention or a list/tuple"):
        lrt_jax.forward(lm, TOKENS, interventions={"a": Add(SITE, np.ones(32), 1.0)})


def test_generation_options_are_checked(lm):
    with pytest.raises(TypeError, match="stop_tokens must be a sequence of integer token ids"):
        lrt_jax.generate(lm, TOKENS, max_new_tokens=2, stop_tokens="12", pad_token_id=0)
    for temperature in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="temperature must be a finite number"):
            lrt_jax.generate(lm, TOKENS, max_new_tokens=2, temperature=temperature)


def test_diff_of_means_on_an_empty_set_is_refused():
    with pytest.raises(ValueError, match="acts_neg is empty"):
        diff_of_means(np.ones((3, 4), np.float32), np.ones((0, 4), np.float32))


def test_checked_makes_out_of_vocabulary_traced_ids_observable(lm):
    run = jax.jit(lrt_jax.checked(lambda t: lrt_jax.forward(lm, t)))
    error, _ = run(jnp.asarray([[1, 200, 3]], jnp.int32))
    assert "index 200 is out of bounds" in error.get()
    error, logits = run(jnp.asarray([[1, 2, 3]], jnp.int32))
    assert error.get() is None
    np.testing.assert_allclose(np.asarray(logits), np.asarray(lrt_jax.forward(lm, np.asarray([[1, 2, 3]]))), atol=1e-5)
