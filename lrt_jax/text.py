"""Text in and out: a left-padded token batch from strings, and strings from tokens.

Left padding puts every prompt's last token in the last column, which is what KV-cached
generation needs (:func:`lrt_jax.generate`); :func:`lrt_jax.forward` and
:func:`lrt_jax.capture` accept it too. The tokenizer is never mutated (its own
``padding_side`` is left as it is): padding happens here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lrt_jax.lm import LM


class Batch(NamedTuple):
    """Token ids ``[batch, seq]`` int32 and ``attention_mask [batch, seq]`` bool (true = real token)."""

    tokens: np.ndarray
    attention_mask: np.ndarray


def _tokenizer(lm: LM):
    if lm.tokenizer is None:
        raise ValueError(f"Model {lm.name or lm.config.model_type!r} has no tokenizer; pass token ids instead, "
                         "or load a checkpoint directory that contains one.")
    return lm.tokenizer


def pad_id_of(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else its end-of-sequence token, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def encode(lm: LM, texts: str | Sequence[str], *, add_special_tokens: bool = True) -> Batch:
    """Tokenize ``texts`` into a left-padded :class:`Batch` (a single string gives one row)."""
    tokenizer = _tokenizer(lm)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("texts is empty; encode needs at least one string.")
    not_strings = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if not_strings:
        kinds = sorted({type(texts[i]).__name__ for i in not_strings})
        raise TypeError(f"texts must be strings; items {not_strings} are {kinds}. Pass token ids to forward directly.")
    ids = tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]
    empty = [i for i, row in enumerate(ids) if not row]
    if empty:
        raise ValueError(f"texts {empty} encode to no tokens; every prompt needs at least one.")
    seq = max(len(row) for row in ids)
    tokens = np.full((len(ids), seq), pad_id_of(tokenizer), np.int32)
    mask = np.zeros((len(ids), seq), bool)
    for row, row_ids in enumerate(ids):
        tokens[row, seq - len(row_ids):] = row_ids
        mask[row, seq - len(row_ids):] = True
    return Batch(tokens, mask)


def decode(lm: LM, tokens, attention_mask=None, *, skip_special_tokens: bool = True) -> list[str]:
    """Strings of the rows of ``tokens [batch, seq]``, keeping only tokens where ``attention_mask`` is true."""
    tokenizer = _tokenizer(lm)
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, seq]; got shape {tokens.shape}. Use tokens[None] for one row.")
    mask = np.ones(tokens.shape, bool) if attention_mask is None else np.asarray(attention_mask, bool)
    if mask.shape != tokens.shape:
        raise ValueError(f"attention_mask shape {mask.shape} does not match tokens shape {tokens.shape}.")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"tokens must be integer ids; got dtype {tokens.dtype}.")
    if tokens.size and (tokens[mask] < 0).any():
        raise ValueError(f"tokens holds negative ids (min {int(tokens[mask].min())}); token ids are ≥ 0. "
                         "Was a padding sentinel such as -1 left in the batch? Mask it out with attention_mask.")
    return [tokenizer.decode(row[keep].tolist(), skip_special_tokens=skip_special_tokens)
            for row, keep in zip(tokens, mask)]


def fixed_size_batches(n_rows: int, batch_size: int):
    """``(start, count, row_indices)`` for batches of exactly ``batch_size`` rows.

    The one batcher behind every fixed-shape loop (capture, the LRT activations,
    the steering scorers): the last batch is filled up by repeating its final row,
    whose results the caller drops (``count`` rows are real), so every batch has one
    shape, the model compiles once, and a batch size that is a multiple of a mesh's
    batch axis always divides over it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    for start in range(0, n_rows, batch_size):
        count = min(batch_size, n_rows - start)
        rows = np.arange(start, start + batch_size)
        yield start, count, np.minimum(rows, start + count - 1)

