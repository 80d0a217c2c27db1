"""Activations of a list of texts: tokenize once, run fixed-size batches, keep one row per text.

:func:`capture_texts` is the one batched text capture of the library (the CLI, the
LRT experiment, the steering vectors and the organism diagnostics all call it);
:func:`capture_text_tokens` keeps every real token instead. Both

* tokenize all ``texts`` once and left-pad them to the longest, then run batches of
  exactly ``batch_size`` rows (the last one filled up by repeating its final text,
  see :func:`lrt_jax.text.fixed_size_batches`), so one compilation serves every
  batch and a batch size that is a multiple of a mesh's batch axis divides over it;
* read the chosen position inside the compiled call, so only ``[batch, width]``
  leaves the device per site (``"last"`` and ``"mean"`` through
  :func:`lrt_jax.capture`'s ``reduce``, explicit and answer-letter positions by a
  gather after :func:`lrt_jax.run` in the same ``jit``);
* give a row the same values as the text run alone: positions are counted over
  real tokens (:mod:`lrt_jax._run`), so padding changes nothing.

Positions (``position=``):

* ``"last"`` — the last real token; ``"mean"`` — the mean over real tokens.
* ``"answer_letter"`` — the answer letter of an A/B example ``prompt + letter``
  (:func:`lrt_jax.positions.find_answer_letter_positions`; pass ``letters``).
* an ``int`` or one ``int`` per text — counted over the text's real tokens,
  ``0`` first and ``-1`` last (:func:`lrt_jax.positions.columns_of_real_positions`).
* ``None`` — every position, ``[n_texts, seq, width]`` left-padded to the longest
  text; ``lrt_jax.encode(lm, texts).attention_mask`` marks the real tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from lrt_jax._inputs import check_inputs
from lrt_jax._run import capture, run
from lrt_jax.lm import LM
from lrt_jax.positions import columns_of_real_positions, find_answer_letter_positions, token_at
from lrt_jax.sites import check_sites
from lrt_jax.text import encode, fixed_size_batches

Position = str | int | Sequence[int] | None
REDUCED = ("last", "mean")


@functools.partial(jax.jit, static_argnames=("config", "sites"))
def _capture_at_columns(config, params, tokens, mask, columns, sites):
    acts = run(config, params, (tokens, mask), sites=sites).activations
    return {site: token_at(acts[site], columns) for site in sites}


def _columns(lm: LM, tokens, mask, position, letters) -> np.ndarray | None:
    """``[n_texts]`` columns to gather for an explicit or answer-letter ``position``; ``None`` otherwise."""
    if position is None or (isinstance(position, str) and position in REDUCED):
        if letters is not None:
            raise ValueError(f"letters are read only with position='answer_letter'; got position={position!r}.")
        return None
    try:
        if isinstance(position, str) and position == "answer_letter":
            if letters is None:
                raise ValueError("position='answer_letter' needs letters: the answer letter appended to each text "
                                 "(one string for all, or one per text).")
            return find_answer_letter_positions(lm.tokenizer, tokens, mask, letters)
        if isinstance(position, str):
            raise ValueError(f"position must be 'last', 'mean', 'answer_letter', an int, one int per text or None; "
                             f"got {position!r}.")
        return columns_of_real_positions(mask, position)
    except ValueError as error:
        raise ValueError(f"position={position!r}: {error} (row i is texts[i])") from None


def _batches(lm: LM, texts: Sequence[str], sites, *, position, letters, batch_size, add_special_tokens, progress,
             place_batch, desc):
    """``(start, rows, mask, {site: array})`` for each fixed-size batch; ``rows`` leading rows are real."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("texts is empty; give at least one text to capture.")
    sites = check_sites(lm.config, sites)
    full = encode(lm, texts, add_special_tokens=add_special_tokens)
    columns = _columns(lm, full.tokens, full.attention_mask, position, letters)
    place = place_batch or (lambda array: array)
    batches = list(fixed_size_batches(len(texts), batch_size))
    for start, rows, indices in tqdm(batches, desc=desc or f"capture {lm.name}".strip(), unit="batch", leave=False,
                                     disable=not progress or len(batches) < 2):
        tokens, mask = place(full.tokens[indices]), place(full.attention_mask[indices])
        if columns is None:
            acts = capture(lm, tokens, sites, attention_mask=mask, reduce=position)
        else:
            tokens, mask = check_inputs(lm.config, tokens, mask)
            acts = _capture_at_columns(lm.config, lm.params, tokens, mask, place(columns[indices]), sites)
        yield start, rows, full.attention_mask[indices], {site: acts[site] for site in sites}  # jit sorts keys


def capture_texts(lm: LM, texts: Sequence[str], sites, *, position: Position = "last", batch_size: int = 32,
                  add_special_tokens: bool = True, letters: str | Sequence[str] | None = None,
                  progress: bool = True, place_batch: Callable | None = None, desc: str | None = None,
                  dtype=np.float32) -> dict[str, np.ndarray]:
    """Activations ``{site: [n_texts, width]}`` of ``lm`` at one position of each text (module doc).

    Args:
      lm: the model, with a tokenizer.
      texts: the texts (a single string is one text).
      sites: a site name or a sequence of them, e.g. ``["layers.3.resid_post"]``.
      position: ``"last"`` (default), ``"mean"``, ``"answer_letter"``, an ``int``,
        one ``int`` per text, or ``None`` for every position (module doc).
      batch_size: texts per compiled call; every batch has this many rows.
      add_special_tokens: passed to the tokenizer (``False`` for chat-templated text
        that already holds its special tokens).
      letters: with ``position="answer_letter"``, the appended letter of every text
        (one string) or of each text.
      progress: show a progress bar when there is more than one batch.
      place_batch: puts each ``[batch, ...]`` array on devices (e.g.
        :func:`lrt_jax.parallel.shard_batch` over a mesh); default: as is.
      desc: the progress bar's label.
      dtype: NumPy dtype of the result (float32 by default); ``None`` keeps the model's.

    Returns:
      ``{site: [n_texts, width]}`` in the order of ``sites`` (``[n_texts, seq, width]``
      with ``position=None``), row ``i`` from ``texts[i]``.

    Raises:
      ValueError: for no texts, a text with no tokens, an unknown site, a position
        outside a text's tokens or an answer letter not found (naming the text).
    """
    chunks = {}
    for _, rows, _, acts in _batches(lm, texts, sites, position=position, letters=letters, batch_size=batch_size,
                                     add_special_tokens=add_special_tokens, progress=progress,
                                     place_batch=place_batch, desc=desc):
        for site, array in acts.items():
            chunks.setdefault(site, []).append(np.asarray(array[:rows], dtype))
    return {site: np.concatenate(parts) for site, parts in chunks.items()}


def capture_text_tokens(lm: LM, texts: Sequence[str], sites, *, batch_size: int = 32, add_special_tokens: bool = True,
                        progress: bool = True, place_batch: Callable | None = None, desc: str | None = None,
                        dtype=np.float32) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Activations at every real token of ``texts``: ``({site: [n_tokens, width]}, text_index [n_tokens])``.

    The rows are the real tokens of ``texts[0]`` in order, then those of ``texts[1]``…;
    ``text_index[r]`` is the text that row ``r`` came from. Padding never appears, so
    memory grows with the number of tokens, not with ``n_texts × longest``. Arguments
    as in :func:`capture_texts`.
    """
    chunks, text_index = {}, []
    for start, rows, mask, acts in _batches(lm, texts, sites, position=None, letters=None, batch_size=batch_size,
                                            add_special_tokens=add_special_tokens, progress=progress,
                                            place_batch=place_batch, desc=desc):
        real = mask[:rows]
        for site, array in acts.items():
            chunks.setdefault(site, []).append(np.asarray(array[:rows], dtype)[real])
        text_index.append(np.nonzero(real)[0] + start)
    return {site: np.concatenate(parts) for site, parts in chunks.items()}, np.concatenate(text_index)
