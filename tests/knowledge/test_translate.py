"""Translate and substitute on two tiny random models with different tokenizers.

The teacher reads piece tokens (character BPE), the student word tokens (the two
tokenizers of ``test_token_alignment``). Checks:

* the fitted map is NumPy's closed-form ridge on the aligned word rows, and its R²
  (fit and held-out texts) is NumPy's;
* ``Replace`` at the student's last layer gives logits = ``lm_head(final_norm(H'))``
  computed in NumPy from captured states ``H`` with the word rows replaced by
  ``X W + b``; ``Mix(β)`` the same with ``(1 − β) H + β (X W + b)``;
* at a middle layer, substitution equals running the student with a hand-built
  ``Replace`` of the whole ``[batch, seq, d]`` state;
* with the student as its own teacher and an identity map, forward and both
  generation versions reproduce the plain student exactly;
* generation: the prompt-positions version's first token and the per-step version's
  first two tokens are the argmax of the substituted forward pass on the text so far.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_token_alignment import piece_tokenizer, word_tokenizer

import lrt_jax
from lrt_jax import ModelConfig, init_params, mappers
from lrt_jax import generate
from lrt_jax.interventions import Replace
from lrt_jax.knowledge.token_alignment import align_words
from lrt_jax.knowledge.translate import (
    SiteTranslation,
    _split_texts,
    fit_site_translation,
    forward_with_substitution,
    generate_with_substitution,
    random_translation_like,
)
from lrt_jax.lm import LM
from lrt_jax.text import decode

TEXTS = ["the cat sat .", "the dog ran .", "cat ran", "dog sat .", "the cat ran . the dog sat", "dog",
         "sat the cat .", "ran the dog . cat", "the the cat", "dog dog ran ."]
PROMPTS = ["the cat", "dog ran . the"]
TEACHER_SITE, LAST_STUDENT_SITE, MIDDLE_STUDENT_SITE = "layers.1.resid_post", "layers.1.resid_post", "layers.0.resid_post"
ALPHA = 0.3


def tiny_lm(tokenizer, d_model: int, seed: int) -> LM:
    config = ModelConfig(model_type="llama", vocab_size=len(tokenizer), d_model=d_model, n_layers=2, n_heads=2,
                         n_kv_heads=1, head_dim=d_model // 2, d_ff=2 * d_model, max_position_embeddings=64)
    params = init_params(config, jax.random.key(seed))
    # Larger weights than the 0.02 init, so that states differ clearly between tokens.
    params = jax.tree.map(lambda p: p * 10.0 if p.ndim > 1 else p, params)
    return LM(config, params, tokenizer, f"tiny-{d_model}")


@pytest.fixture(scope="module")
def teacher():
    return tiny_lm(piece_tokenizer(), 24, seed=1)


@pytest.fixture(scope="module")
def student():
    return tiny_lm(word_tokenizer(), 16, seed=2)


def numpy_ridge(x, y, alpha):
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    weight = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return weight, y_mean - x_mean @ weight


def numpy_r2(y, y_hat):
    return 1 - np.sum((y - y_hat) ** 2) / np.sum((y - y.mean(0)) ** 2)


def word_rows(lm, side, site, word_mask):
    acts = np.asarray(lrt_jax.capture(lm, side.tokens, site, attention_mask=side.attention_mask)[site], np.float64)
    rows = [acts[b, side.last_token_index[b, w]] for b, w in zip(*np.nonzero(word_mask))]
    return np.stack(rows)


@pytest.fixture(scope="module")
def translations(teacher, student):
    """``{student site: translation}`` fitted without held-out texts."""
    return {site: fit(teacher, student, site) for site in (LAST_STUDENT_SITE, MIDDLE_STUDENT_SITE)}


def fit(teacher, student, student_site, heldout_fraction=0.0):
    alignment = align_words(TEXTS, teacher.tokenizer, student.tokenizer)
    return fit_site_translation(teacher, student, alignment, teacher_site=TEACHER_SITE, student_site=student_site,
                                mapper=mappers.ridge(alpha=ALPHA), heldout_fraction=heldout_fraction, seed=3)


def test_fit_is_numpy_ridge_with_numpy_r2(teacher, student):
    alignment = align_words(TEXTS, teacher.tokenizer, student.tokenizer)
    translation = fit(teacher, student, LAST_STUDENT_SITE, heldout_fraction=0.3)
    heldout = _split_texts(len(TEXTS), 0.3, 3)
    assert heldout.sum() == 3
    fit_mask, heldout_mask = alignment.word_mask & ~heldout[:, None], alignment.word_mask & heldout[:, None]
    x = word_rows(teacher, alignment.teacher, TEACHER_SITE, fit_mask)
    y = word_rows(student, alignment.student, LAST_STUDENT_SITE, fit_mask)
    weight, bias = numpy_ridge(x, y, ALPHA)
    np.testing.assert_allclose(translation.state.weight, weight, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(translation.state.bias, bias, rtol=2e-3, atol=2e-4)
    assert translation.n_fit_words == len(x) and translation.n_heldout_words == heldout_mask.sum()
    np.testing.assert_allclose(translation.r2_fit, numpy_r2(y, x @ weight + bias), atol=1e-4)
    x_out = word_rows(teacher, alignment.teacher, TEACHER_SITE, heldout_mask)
    y_out = word_rows(student, alignment.student, LAST_STUDENT_SITE, heldout_mask)
    np.testing.assert_allclose(translation.r2_heldout, numpy_r2(y_out, x_out @ weight + bias), atol=1e-4)


def substituted_state_by_hand(teacher, student, alignment, translation, beta):
    """Student states ``[batch, seq, d]`` at the translation's site, word rows replaced or mixed in NumPy."""
    side = alignment.student
    site = translation.student_site
    states = np.asarray(lrt_jax.capture(student, side.tokens, site, attention_mask=side.attention_mask)[site])
    teacher_acts = np.asarray(lrt_jax.capture(teacher, alignment.teacher.tokens, TEACHER_SITE,
                                              attention_mask=alignment.teacher.attention_mask)[TEACHER_SITE])
    weight, bias = np.asarray(translation.state.weight), np.asarray(translation.state.bias)
    edited = states.copy()
    for b, w in zip(*np.nonzero(alignment.word_mask)):
        translated = teacher_acts[b, alignment.teacher.last_token_index[b, w]] @ weight + bias
        slot = side.last_token_index[b, w]
        edited[b, slot] = translated if beta is None else (1 - beta) * states[b, slot] + beta * translated
    return edited


@pytest.mark.parametrize("beta", [None, 0.3])
def test_substitution_at_last_layer_equals_numpy_head(teacher, student, translations, beta):
    translation = translations[LAST_STUDENT_SITE]
    alignment = align_words(PROMPTS, teacher.tokenizer, student.tokenizer)
    logits = forward_with_substitution(student, teacher, alignment, [translation], beta=beta)
    state = substituted_state_by_hand(teacher, student, alignment, translation, beta)
    normed = state / np.sqrt(np.mean(state**2, axis=-1, keepdims=True) + student.config.norm_eps)
    expected = normed * np.asarray(student.params["final_norm"]["scale"]) @ np.asarray(student.params["lm_head"]["kernel"])
    mask = alignment.student.attention_mask
    np.testing.assert_allclose(np.asarray(logits)[mask], expected[mask], rtol=1e-4, atol=1e-4)


def test_substitution_at_middle_layer_equals_running_from_replaced_state(teacher, student, translations):
    translation = translations[MIDDLE_STUDENT_SITE]
    alignment = align_words(PROMPTS, teacher.tokenizer, student.tokenizer)
    logits = forward_with_substitution(student, teacher, alignment, [translation])
    state = substituted_state_by_hand(teacher, student, alignment, translation, None)
    from_state = lrt_jax.forward(student, alignment.student.tokens, attention_mask=alignment.student.attention_mask,
                                 interventions=Replace(MIDDLE_STUDENT_SITE, state))
    mask = alignment.student.attention_mask
    np.testing.assert_allclose(np.asarray(logits)[mask], np.asarray(from_state)[mask], rtol=1e-4, atol=1e-4)
    unchanged = lrt_jax.forward(student, alignment.student.tokens, attention_mask=mask)
    assert not np.allclose(np.asarray(unchanged)[mask], np.asarray(logits)[mask], atol=1e-3)


def test_identity_self_translation_changes_nothing(student):
    width = student.config.d_model
    identity = SiteTranslation(MIDDLE_STUDENT_SITE, MIDDLE_STUDENT_SITE, "last",
                               mappers.AffineState(jnp.eye(width), jnp.zeros(width)), mappers.apply_affine,
                               1.0, 1.0, 0, 0)
    alignment = align_words(PROMPTS, student.tokenizer, student.tokenizer)
    mask = alignment.student.attention_mask
    plain = lrt_jax.forward(student, alignment.student.tokens, attention_mask=mask)
    substituted = forward_with_substitution(student, student, alignment, [identity])
    np.testing.assert_allclose(np.asarray(substituted)[mask], np.asarray(plain)[mask], rtol=1e-5, atol=1e-5)
    out = generate(student, alignment.student.tokens, attention_mask=mask, max_new_tokens=3)
    expected = decode(student, out.tokens, out.generated_mask)
    for per_step in (False, True):
        got = generate_with_substitution(student, student, PROMPTS, [identity], max_new_tokens=3, per_step=per_step)
        assert got == expected


def test_generation_follows_substituted_forward(teacher, student, translations):
    translation = translations[MIDDLE_STUDENT_SITE]
    alignment = align_words(PROMPTS, teacher.tokenizer, student.tokenizer)
    first = np.asarray(jnp.argmax(forward_with_substitution(student, teacher, alignment, [translation])[:, -1], -1))
    prompt_mode = generate_with_substitution(student, teacher, PROMPTS, [translation], max_new_tokens=1)
    assert prompt_mode == [student.tokenizer.decode([int(t)]) for t in first]
    per_step = generate_with_substitution(student, teacher, PROMPTS, [translation], max_new_tokens=2, per_step=True)
    grown = [f"{prompt} {word}" for prompt, word in zip(PROMPTS, prompt_mode)]
    grown_alignment = align_words(grown, teacher.tokenizer, student.tokenizer)
    second = np.asarray(jnp.argmax(forward_with_substitution(student, teacher, grown_alignment, [translation])[:, -1], -1))
    assert per_step == [student.tokenizer.decode([int(a), int(b)]) for a, b in zip(first, second)]


def test_random_control_keeps_norm_and_bias(translations):
    translation = translations[LAST_STUDENT_SITE]
    control = random_translation_like(translation, seed=5)
    np.testing.assert_allclose(jnp.linalg.norm(control.state.weight), jnp.linalg.norm(translation.state.weight),
                               rtol=1e-5)
    np.testing.assert_allclose(control.state.bias, translation.state.bias)
    assert np.isnan(control.r2_fit)
