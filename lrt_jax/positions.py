"""Position rules: which token's activation stands for a text.

A capture gives ``[batch, seq, d_model]`` activations and the batch's attention
mask ``[batch, seq]`` (1 for real tokens, 0 for padding). Estimators and maps that
want one ``[d_model]`` row per text choose it here:

* :func:`last_token` — the last real token, for left- *or* right-padded batches.
* :func:`token_at` — an explicit column per row, e.g. the answer letter of an
  A/B prompt found by :func:`find_answer_letter_positions`, or a position counted
  over real tokens turned into a column by :func:`columns_of_real_positions`.
* :func:`masked_mean` — the mean over the positions a mask selects.

The first three are pure ``jnp`` functions and work under ``jit`` and ``vmap``; the
two finders read token values and run on the host (NumPy).

A/B convention (shared with :func:`lrt_jax.tasks.format_ab_prompt`): the prompt
text ends with the opening parenthesis of the answer, ``"... Answer: ("`` or the
chat template's assistant turn followed by ``"("``, and a contrast example
appends the letter, e.g. ``prompt + "A"``. The steering activation is read at
the answer-letter token, as in CAA.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax._checks import check_activations, check_rank


def _check_acts_and_mask(acts, mask) -> None:
    check_activations("acts", acts, rank=3, layout="[batch, seq, d_model]")
    check_rank("mask", mask, 2, "[batch, seq]")
    if np.shape(mask) != np.shape(acts)[:2]:
        raise ValueError(
            f"mask has shape {np.shape(mask)} but acts has [batch, seq] = {np.shape(acts)[:2]}; "
            "pass the attention mask of the batch these activations were captured from."
        )
    if not isinstance(mask, jax.core.Tracer) and not np.asarray(mask).any(axis=1).all():
        raise ValueError("Some rows of mask select no token; every prompt needs at least one real token.")


def last_real_index(mask) -> jnp.ndarray:
    """Index ``[batch]`` of the last real token of each row of ``mask [batch, seq]`` (left or right padding).

    Unchecked and traceable: the one computation :func:`last_token`, ``capture(reduce="last")``
    and the ``"last"`` intervention rule share.
    """
    mask = jnp.asarray(mask)
    return mask.shape[-1] - 1 - jnp.argmax(mask[:, ::-1].astype(bool), axis=-1)


def last_token(acts, mask) -> jnp.ndarray:
    """Activation at the last real token of each row.

    Works for right padding (last real token at ``sum(mask) - 1``) and left
    padding (at ``seq - 1``) alike, because it takes the highest masked index.

    Args:
      acts: ``[batch, seq, d_model]`` activations.
      mask: ``[batch, seq]`` attention mask, nonzero on real tokens.

    Returns:
      ``[batch, d_model]``.
    """
    _check_acts_and_mask(acts, mask)
    return token_at(acts, last_real_index(mask))


def token_at(acts, index) -> jnp.ndarray:
    """Activation at one explicit position per row.

    Args:
      acts: ``[batch, seq, d_model]`` activations.
      index: ``[batch]`` integer positions in ``[0, seq)``.

    Returns:
      ``[batch, d_model]`` with row ``b`` equal to ``acts[b, index[b]]``.
    """
    check_activations("acts", acts, rank=3, layout="[batch, seq, d_model]")
    check_rank("index", index, 1, "[batch]")
    batch, seq, _ = np.shape(acts)
    if np.shape(index)[0] != batch:
        raise ValueError(f"index has {np.shape(index)[0]} entries for a batch of {batch}; give one position per row.")
    if not isinstance(index, jax.core.Tracer):
        index_np = np.asarray(index)
        if ((index_np < 0) | (index_np >= seq)).any():
            raise ValueError(
                f"index values {index_np.tolist()} must lie in [0, {seq}); negative indices are not accepted."
            )
    gathered = jnp.take_along_axis(jnp.asarray(acts), jnp.asarray(index)[:, None, None], axis=1)
    return gathered[:, 0, :]


def masked_mean(acts, mask) -> jnp.ndarray:
    """Mean activation over the positions ``mask`` selects (e.g. all prompt tokens).

    Args:
      acts: ``[batch, seq, d_model]`` activations.
      mask: ``[batch, seq]`` weights, usually 0/1; every row needs a nonzero entry.

    Returns:
      ``[batch, d_model]``.
    """
    _check_acts_and_mask(acts, mask)
    weights = jnp.asarray(mask, dtype=jnp.result_type(acts))
    totals = jnp.einsum("bs,bsd->bd", weights, jnp.asarray(acts))
    return totals / jnp.sum(weights, axis=1, keepdims=True)


def columns_of_real_positions(mask, positions: int | Sequence[int]) -> np.ndarray:
    """Columns of positions counted over each row's real tokens, ready for :func:`token_at`.

    Position ``0`` is a row's first real token and ``-1`` its last, whatever the
    padding, so the same position names the same token in a padded batch and in
    the text alone.

    Args:
      mask: ``[batch, seq]`` attention mask (left or right padding).
      positions: one position for every row, or one per row.

    Returns:
      ``[batch]`` NumPy int32 columns.

    Raises:
      ValueError: naming the first row whose position lies outside its real tokens.
    """
    check_rank("mask", mask, 2, "[batch, seq]")
    mask = np.asarray(mask).astype(bool)
    positions = np.broadcast_to(np.asarray(positions), (len(mask),)) if np.ndim(positions) == 0 \
        else np.asarray(positions)
    if positions.shape != (len(mask),) or not np.issubdtype(positions.dtype, np.integer):
        raise ValueError(f"positions must be one integer or one per row ({len(mask)}); got {positions.tolist()}.")
    columns = np.empty(len(mask), np.int32)
    for row, (row_mask, position) in enumerate(zip(mask, positions.tolist())):
        real = np.flatnonzero(row_mask)
        if not -len(real) <= position < len(real):
            raise ValueError(f"Row {row}: position {position} is outside its {len(real)} real tokens; use a position "
                             f"in [{-len(real)}, {len(real)}) (negative counts from the end).")
        columns[row] = real[position]
    return columns


def find_answer_letter_positions(
    tokenizer,
    token_ids,
    mask,
    letters: str | Sequence[str],
    *,
    max_lookback: int = 3,
) -> np.ndarray:
    """Position of the answer-letter token in each tokenized A/B example.

    Searches backwards from the last real token over at most ``max_lookback``
    tokens for the first token whose text, stripped of spaces and parentheses,
    equals the letter. That tolerates tokenizers that merge ``"(A"`` into one
    token and examples that close the parenthesis (``"(A)"``, CAA's original
    form, where the letter is one token before the end).

    Args:
      tokenizer: a ``transformers`` tokenizer (``decode`` is used per token).
      token_ids: ``[batch, seq]`` token ids of ``prompt + letter`` texts.
      mask: ``[batch, seq]`` attention mask (left or right padding).
      letters: the appended letter, one for all rows (``"A"``) or one per row.
      max_lookback: how many trailing real tokens to inspect.

    Returns:
      ``[batch]`` NumPy integer positions, ready for :func:`token_at`.

    Raises:
      ValueError: if a row has no matching token near its end, with the decoded tail.
    """
    check_rank("token_ids", token_ids, 2, "[batch, seq]")
    token_ids, mask = np.asarray(token_ids), np.asarray(mask)
    if mask.shape != token_ids.shape:
        raise ValueError(f"mask has shape {mask.shape} but token_ids has shape {token_ids.shape}.")
    letters = [letters] * len(token_ids) if isinstance(letters, str) else list(letters)
    if len(letters) != len(token_ids):
        raise ValueError(f"Got {len(letters)} letters for {len(token_ids)} rows; give one letter or one per row.")

    positions = np.empty(len(token_ids), dtype=np.int32)
    for row, (ids, row_mask, letter) in enumerate(zip(token_ids, mask, letters)):
        real_positions = np.flatnonzero(row_mask)[::-1][:max_lookback]
        pieces = [tokenizer.decode([int(ids[p])]) for p in real_positions]
        matches = [p for p, piece in zip(real_positions, pieces) if piece.strip().strip("()").strip() == letter]
        if not matches:
            raise ValueError(
                f"Row {row}: no token reading {letter!r} among the last {max_lookback} real tokens "
                f"{pieces[::-1]!r}. A/B examples must end with the answer letter, e.g. prompt + {letter!r} "
                "where the prompt ends with '(' (see lrt_jax.tasks.format_ab_prompt)."
            )
        positions[row] = matches[0]
    return positions
