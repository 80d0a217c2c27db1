"""Semantic bases: one residual-stream direction per vocabulary item, read off the LM head.

A model turns its final hidden state ``h [d]`` into logits ``z = h @ W`` with the
*effective head* ``W [d, V]`` (``lm_head/kernel``, or ``embed/embedding.T`` when tied;
by default with the final norm's gain folded in, ``W = diag(offset + scale) @ W_head``,
because the head reads normalised states). Row ``v`` of the pseudo-inverse
``P = pinv(W) [V, d]`` is the least-norm hidden direction whose logit vector is the
``v``-th unit vector: it is what "token ``v``" looks like inside the model. The
**semantic bases** are those rows unit-normalised::

    bases[v] = P[v] / ‖P[v]‖          bases: [V, d]

For ``V > d`` the bases are an overcomplete frame of the hidden space, so the
**coefficients** of an activation are chosen as the least-norm solution of
``coefficients @ bases = h``::

    coefficients = h @ pinv(bases)     [..., d] → [..., V]

which reconstructs ``h`` exactly whenever ``bases`` spans the hidden space (true for a
trained head of full rank). Latent semantic alignment expresses a teacher activation
in coefficients on the *teacher's* bases and re-synthesises it through the
*student's* bases, which needs the same vocabulary on both sides (checked by
:func:`check_shared_vocabulary`)::

    student_activation = (teacher_activation @ pinv(teacher_bases)) @ student_bases

Both steps are linear, so :func:`semantic_alignment_matrix` precomputes the
``[d_teacher, d_student]`` product once.

Conventions: the bases are computed in float32 with ``jnp.linalg.pinv`` (singular
values below its default relative cut-off are treated as zero). A LayerNorm bias and
logit soft-capping are not folded in: the bias is a constant offset, not a direction,
and soft-capping is monotone per logit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lrt_jax.lm import LM


class VocabularyMismatchError(ValueError):
    """Raised when teacher and student do not share one vocabulary (ids and token strings)."""


def effective_lm_head(lm: LM, *, fold_final_norm: bool = True) -> jax.Array:
    """The matrix ``W [d_model, vocab]`` with ``logits = final_norm_output @ W`` (see module doc).

    Args:
      lm: the model; tied models use ``embed/embedding.T``.
      fold_final_norm: multiply row ``i`` by the final norm's gain ``offset + scale[i]``, so
        that ``W`` acts on the *normalised-but-unscaled* state, the space the residual
        stream lives in up to one scalar per token.
    """
    params = lm.params
    head = params["embed"]["embedding"].T if lm.config.tie_embeddings else params["lm_head"]["kernel"]
    head = jnp.asarray(head, jnp.float32)
    if not fold_final_norm:
        return head
    gain = lm.config.norm_offset + jnp.asarray(params["final_norm"]["scale"], jnp.float32)
    return gain[:, None] * head


def semantic_bases(lm_head: jax.Array) -> jax.Array:
    """Unit-normalised rows of ``pinv(lm_head)``: ``[d_model, vocab]`` → bases ``[vocab, d_model]``."""
    if lm_head.ndim != 2:
        raise ValueError(f"lm_head must be a [d_model, vocab] matrix; got shape {lm_head.shape}.")
    inverse = jnp.linalg.pinv(jnp.asarray(lm_head, jnp.float32))
    norms = jnp.linalg.norm(inverse, axis=-1, keepdims=True)
    # A zero row (a token the head cannot express) stays zero instead of becoming NaN.
    return inverse / jnp.where(norms > 0, norms, 1.0)


def semantic_coefficients(activations: jax.Array, bases: jax.Array) -> jax.Array:
    """Least-norm coefficients ``[..., vocab]`` with ``coefficients @ bases == activations [..., d_model]``."""
    _check_width(activations, bases, "activations")
    return activations @ jnp.linalg.pinv(bases).astype(activations.dtype)


def reconstruct_from_coefficients(coefficients: jax.Array, bases: jax.Array) -> jax.Array:
    """Activations ``[..., d_model]`` synthesised from ``coefficients [..., vocab]`` on ``bases [vocab, d_model]``."""
    if coefficients.shape[-1] != bases.shape[0]:
        raise ValueError(
            f"coefficients have {coefficients.shape[-1]} entries per row but the bases have {bases.shape[0]} "
            "vocabulary items; use coefficients computed on bases of the same vocabulary."
        )
    return coefficients @ bases.astype(coefficients.dtype)


def semantic_alignment_matrix(teacher_bases: jax.Array, student_bases: jax.Array) -> jax.Array:
    """``pinv(teacher_bases) @ student_bases``: ``[d_teacher, d_student]``, teacher activation → student activation."""
    if teacher_bases.shape[0] != student_bases.shape[0]:
        raise VocabularyMismatchError(
            f"teacher bases cover {teacher_bases.shape[0]} vocabulary items, student bases {student_bases.shape[0]}; "
            "latent semantic alignment needs one shared vocabulary."
        )
    return jnp.linalg.pinv(teacher_bases) @ student_bases


def translate_activations(teacher_activations: jax.Array, alignment_matrix: jax.Array) -> jax.Array:
    """Teacher activations ``[..., d_teacher]`` → student activations ``[..., d_student]``."""
    _check_width(teacher_activations, alignment_matrix.T, "teacher_activations")
    return teacher_activations @ alignment_matrix.astype(teacher_activations.dtype)


def check_shared_vocabulary(teacher: LM, student: LM) -> None:
    """Raise :class:`VocabularyMismatchError` unless both models have the same vocabulary.

    Sizes must match; when both models carry a tokenizer, every id must also map to the
    same token string (two tokenizers of one size can still disagree on every id).
    """
    teacher_size, student_size = teacher.config.vocab_size, student.config.vocab_size
    if teacher_size != student_size:
        raise VocabularyMismatchError(
            f"teacher {teacher.name!r} has vocab_size {teacher_size}, student {student.name!r} has {student_size}; "
            "semantic bases need one shared vocabulary (same tokenizer)."
        )
    if teacher.tokenizer is None or student.tokenizer is None:
        return
    teacher_vocabulary, student_vocabulary = teacher.tokenizer.get_vocab(), student.tokenizer.get_vocab()
    differing = sorted(set(teacher_vocabulary.items()) ^ set(student_vocabulary.items()), key=lambda item: item[1])
    if differing:
        raise VocabularyMismatchError(
            f"teacher {teacher.name!r} and student {student.name!r} tokenizers disagree on {len(differing)} "
            f"(token, id) entries, e.g. {differing[:3]}; load both models with the same tokenizer."
        )


def _check_width(activations: jax.Array, bases: jax.Array, name: str) -> None:
    if activations.shape[-1] != bases.shape[-1]:
        raise ValueError(
            f"{name} have width {activations.shape[-1]} but the bases live in width {bases.shape[-1]}; "
            "use the bases of the model the activations come from."
        )
