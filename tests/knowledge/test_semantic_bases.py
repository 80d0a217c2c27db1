"""Semantic bases, coefficients and alignment against NumPy pseudo-inverses."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from lrt_jax.config import ModelConfig
from lrt_jax.knowledge.semantic_bases import (
    VocabularyMismatchError, check_shared_vocabulary, effective_lm_head, reconstruct_from_coefficients,
    semantic_alignment_matrix, semantic_bases, semantic_coefficients, translate_activations)
from lrt_jax.lm import LM
from lrt_jax.organisms.tokenizer import train_word_tokenizer


def tiny_lm(d_model: int, vocab_size: int, seed: int, **overrides) -> LM:
    """A model with only the parameters the semantic bases read (no decoder is run)."""
    config = ModelConfig(model_type="llama", vocab_size=vocab_size, d_model=d_model, n_layers=1, n_heads=2,
                         n_kv_heads=1, head_dim=d_model // 2, d_ff=2 * d_model, **overrides)
    rng = np.random.default_rng(seed)
    params = {"embed": {"embedding": rng.normal(size=(vocab_size, d_model)).astype(np.float32)},
              "final_norm": {"scale": rng.uniform(0.5, 2.0, size=d_model).astype(np.float32)}}
    if not config.tie_embeddings:
        params["lm_head"] = {"kernel": rng.normal(size=(d_model, vocab_size)).astype(np.float32)}
    return LM(config, params, name=f"tiny-{d_model}")


def numpy_bases(head: np.ndarray) -> np.ndarray:
    inverse = np.linalg.pinv(head.astype(np.float64))
    return inverse / np.linalg.norm(inverse, axis=1, keepdims=True)


def test_effective_head_folds_the_final_norm_gain_untied_and_tied():
    lm = tiny_lm(8, 12, seed=0)
    gain = np.asarray(lm.params["final_norm"]["scale"])
    np.testing.assert_allclose(effective_lm_head(lm), gain[:, None] * np.asarray(lm.params["lm_head"]["kernel"]),
                               rtol=1e-6)
    np.testing.assert_array_equal(effective_lm_head(lm, fold_final_norm=False), lm.params["lm_head"]["kernel"])
    tied = tiny_lm(8, 12, seed=1, tie_embeddings=True, norm_offset=1.0)
    gain = 1.0 + np.asarray(tied.params["final_norm"]["scale"])
    np.testing.assert_allclose(effective_lm_head(tied), gain[:, None] * np.asarray(tied.params["embed"]["embedding"]).T,
                               rtol=1e-6)


def test_bases_are_unit_rows_of_the_pseudo_inverse():
    head = np.random.default_rng(0).normal(size=(6, 15)).astype(np.float32)
    bases = semantic_bases(jnp.asarray(head))
    assert bases.shape == (15, 6)
    np.testing.assert_allclose(bases, numpy_bases(head), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(bases, axis=1), 1.0, rtol=1e-5)


def test_hand_computed_bases_of_a_small_head():
    # W = [[1, 0, 1], [0, 2, 0]]: pinv(W) = [[1/2, 0], [0, 1/2], [1/2, 0]], so the rows
    # normalise to e1, e2, e1 — tokens 0 and 2 share one direction.
    bases = semantic_bases(jnp.asarray([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]]))
    np.testing.assert_allclose(bases, [[1, 0], [0, 1], [1, 0]], atol=1e-6)
    # Least-norm coefficients of h = (2, 3) on these bases split e1's weight equally.
    np.testing.assert_allclose(semantic_coefficients(jnp.asarray([2.0, 3.0]), bases), [1, 3, 1], atol=1e-5)


def test_coefficients_are_least_norm_and_reconstruct_exactly():
    rng = np.random.default_rng(1)
    head = rng.normal(size=(6, 15)).astype(np.float32)
    bases = semantic_bases(jnp.asarray(head))
    activations = rng.normal(size=(4, 3, 6)).astype(np.float32)
    coefficients = semantic_coefficients(jnp.asarray(activations), bases)
    np.testing.assert_allclose(coefficients, activations @ np.linalg.pinv(numpy_bases(head)), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(reconstruct_from_coefficients(coefficients, bases), activations, rtol=1e-3, atol=1e-4)


def test_alignment_matrix_equals_coefficients_then_student_synthesis():
    rng = np.random.default_rng(2)
    teacher_head, student_head = rng.normal(size=(10, 20)), rng.normal(size=(4, 20))
    teacher_bases = semantic_bases(jnp.asarray(teacher_head, jnp.float32))
    student_bases = semantic_bases(jnp.asarray(student_head, jnp.float32))
    alignment = semantic_alignment_matrix(teacher_bases, student_bases)
    np.testing.assert_allclose(alignment, np.linalg.pinv(numpy_bases(teacher_head)) @ numpy_bases(student_head),
                               rtol=1e-3, atol=1e-4)
    teacher_activations = jnp.asarray(rng.normal(size=(5, 10)), jnp.float32)
    two_steps = reconstruct_from_coefficients(semantic_coefficients(teacher_activations, teacher_bases),
                                                 student_bases)
    np.testing.assert_allclose(translate_activations(teacher_activations, alignment), two_steps, rtol=1e-3, atol=1e-4)


def test_width_and_vocabulary_mismatches_are_reported():
    bases = semantic_bases(jnp.ones((4, 9)) + jnp.eye(4, 9))
    with pytest.raises(ValueError, match="width 5"):
        semantic_coefficients(jnp.ones((2, 5)), bases)
    with pytest.raises(VocabularyMismatchError, match="shared vocabulary"):
        semantic_alignment_matrix(bases, bases[:8])


def test_shared_vocabulary_check_compares_sizes_and_token_strings():
    teacher, student = tiny_lm(8, 9, seed=0), tiny_lm(4, 9, seed=3)
    check_shared_vocabulary(teacher, student)
    with pytest.raises(VocabularyMismatchError, match="vocab_size 9.*has 10"):
        check_shared_vocabulary(teacher, tiny_lm(4, 10, seed=3))
    same = train_word_tokenizer(["a b c", "d e"], ["a", "b", "c", "d", "e"])
    other = train_word_tokenizer(["a b c", "d f"], ["a", "b", "c", "d", "f"])
    check_shared_vocabulary(teacher._replace(tokenizer=same), student._replace(tokenizer=same))
    with pytest.raises(VocabularyMismatchError, match="disagree"):
        check_shared_vocabulary(teacher._replace(tokenizer=same), student._replace(tokenizer=other))
