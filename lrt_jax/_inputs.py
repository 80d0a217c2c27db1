"""Boundary checks of a token batch, run while its values are concrete (before any ``jit``).

Shape and dtype checks always run; value checks (the id range, empty mask rows) run
whenever the values are known, also for arrays a user closes over inside their own
``jit``. Traced values cannot be inspected here: :func:`lrt_jax.checked` makes
out-of-vocabulary ids observable under tracing instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.config import ModelConfig
from lrt_jax._intervention_checks import concrete_value

__all__ = ["check_context_length", "check_inputs", "split_batch"]


def split_batch(tokens, attention_mask):
    """``(tokens, attention_mask)`` of a :class:`~lrt_jax.text.Batch` passed as ``tokens``, else unchanged."""
    if hasattr(tokens, "attention_mask") and hasattr(tokens, "tokens"):
        if attention_mask is not None:
            raise ValueError("pass either a Batch or tokens with attention_mask=..., not both; the Batch "
                             "already holds its mask.")
        return tokens.tokens, tokens.attention_mask
    return tokens, attention_mask


def check_context_length(config: ModelConfig, length: int, what: str = "sequence length", fix: str = "") -> None:
    """``ValueError`` when ``length`` positions exceed the model's ``max_position_embeddings``."""
    if length > config.max_position_embeddings:
        fix = fix or f"shorten or split the input to at most {config.max_position_embeddings} tokens"
        raise ValueError(
            f"{what} {length} exceeds the model's context of {config.max_position_embeddings} positions "
            f"(max_position_embeddings); {fix}."
        )


def check_inputs(config: ModelConfig, tokens, attention_mask) -> tuple[jax.Array, jax.Array]:
    """Validate tokens and mask at the boundary; returns ``(tokens int32, mask bool)``.

    Value checks (the id range, empty mask rows) run whenever the values are known,
    including arrays closed over inside a user's ``jit``; traced inputs get shape and
    dtype checks only (see :func:`forward` for out-of-vocabulary ids under tracing).
    ``tokens`` may be a :class:`~lrt_jax.text.Batch` (then ``attention_mask`` is ``None``).
    """
    tokens, attention_mask = split_batch(tokens, attention_mask)
    if isinstance(tokens, (list, tuple)):
        tokens = np.asarray(tokens)
    if getattr(tokens, "ndim", None) != 2:
        raise ValueError(
            f"tokens must be a [batch, seq] integer array; got shape {getattr(tokens, 'shape', None)}. "
            "Use tokens[None] for a single sequence."
        )
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"tokens must be integers; got dtype {tokens.dtype}.")
    if 0 in tokens.shape:
        raise ValueError(f"the token batch is empty (shape {tuple(tokens.shape)}); every batch needs at least one "
                         "row and one token.")
    check_context_length(config, tokens.shape[1])
    values = concrete_value(tokens)
    if values is not None:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"token ids must be in [0, {config.vocab_size}) for this model's vocabulary; got range "
                f"[{low}, {high}]. Was the batch made with another model's tokenizer?"
            )
    if attention_mask is None:
        mask = jnp.ones(tokens.shape, bool)
    else:
        if isinstance(attention_mask, (list, tuple)):
            attention_mask = np.asarray(attention_mask)
        if tuple(np.shape(attention_mask)) != tuple(tokens.shape):
            raise ValueError(
                f"attention_mask shape {tuple(np.shape(attention_mask))} does not match tokens shape "
                f"{tuple(tokens.shape)}."
            )
        mask_values = concrete_value(attention_mask)
        if mask_values is not None and not bool(np.all(np.any(mask_values.astype(bool), axis=-1))):
            raise ValueError("every row of attention_mask needs at least one real token (a 1); found an empty row.")
        mask = jnp.asarray(attention_mask).astype(bool)
    return jnp.asarray(tokens, jnp.int32), mask
