"""Paired activations of two models on the same texts, one row per real token.

Two models that share a tokenizer (an organism family, Pythia sizes, Gemma-2 sizes)
see the same tokens, so row ``i`` of the source matrix and row ``i`` of the target
matrix are the same token in the same context — the data an activation map is fitted
on. Models with different vocabularies need the character-offset alignment of
:mod:`lrt_jax.knowledge.token_alignment` instead; this module refuses them.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from tqdm.auto import tqdm

from lrt_jax._run import capture
from lrt_jax.lm import LM
from lrt_jax.text import encode_fixed_batches


class PairedActivations(NamedTuple):
    """``source[site] [n_tokens, d_source]``, ``target[site] [n_tokens, d_target]``, and the text of each row."""

    source: dict[str, np.ndarray]
    target: dict[str, np.ndarray]
    text_index: np.ndarray  # [n_tokens] index of the text each row came from


def check_same_tokenizer(source: LM, target: LM) -> None:
    """Raise unless both models tokenize text identically (same vocabulary)."""
    for lm in (source, target):
        if lm.tokenizer is None:
            raise ValueError(f"Model {lm.name!r} has no tokenizer; paired activations need text.")
    if source.tokenizer.get_vocab() != target.tokenizer.get_vocab():
        raise ValueError(
            f"{source.name!r} and {target.name!r} have different vocabularies, so their tokens do not pair up. "
            "Align them by character offsets with lrt_jax.knowledge.token_alignment."
        )


def token_activations(lm: LM, texts: Sequence[str], sites: Sequence[str], *, batch_size: int = 32,
                      progress: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Activations at ``sites`` for every real token of ``texts``: ``({site: [n_tokens, d]}, text_index)``."""
    out = {site: [] for site in sites}
    text_index = []
    batches = encode_fixed_batches(lm, texts, batch_size)
    for start, rows, tokens, mask in tqdm(batches, unit="batch", leave=False, desc=f"capture {lm.name}",
                                          disable=not progress):
        acts = capture(lm, tokens, sites, attention_mask=mask)
        real = mask[:rows]
        for site in sites:
            out[site].append(np.asarray(acts[site])[:rows][real])
        text_index.append(np.nonzero(real)[0] + start)
    return {site: np.concatenate(chunks) for site, chunks in out.items()}, np.concatenate(text_index)


def paired_token_activations(source: LM, target: LM, texts: Sequence[str], source_sites: Sequence[str],
                             target_sites: Sequence[str], *, batch_size: int = 32,
                             progress: bool = True) -> PairedActivations:
    """Token-aligned activations of ``source`` and ``target`` on the same ``texts``."""
    check_same_tokenizer(source, target)
    source_acts, text_index = token_activations(source, texts, source_sites, batch_size=batch_size, progress=progress)
    target_acts, _ = token_activations(target, texts, target_sites, batch_size=batch_size, progress=progress)
    return PairedActivations(source_acts, target_acts, text_index)


def reduced_activations(lm: LM, texts: Sequence[str], site: str, *, reduce: str = "last", batch_size: int = 64,
                        place_batch=None, progress: bool = False, desc: str | None = None) -> np.ndarray:
    """``[n_texts, width]`` float32 activation at ``site`` per text: its last real token or its token mean.

    Args:
      lm: the model (with a tokenizer).
      texts: one row per text.
      site: e.g. ``"layers.3.resid_post"``.
      reduce: ``"last"`` or ``"mean"`` (see :func:`lrt_jax.capture`).
      batch_size: texts per compiled call (all batches share one shape).
      place_batch: puts a batch array on devices (e.g. split over a mesh); default: as is.
      progress, desc: a progress bar and its label.
    """
    place = place_batch or (lambda array: array)
    chunks = []
    batches = encode_fixed_batches(lm, texts, batch_size)
    for _, rows, tokens, mask in tqdm(batches, unit="batch", leave=False, desc=desc or f"capture {lm.name}",
                                      disable=not progress):
        acts = capture(lm, place(tokens), [site], attention_mask=place(mask), reduce=reduce)[site]
        chunks.append(np.asarray(acts, np.float32)[:rows])
    return np.concatenate(chunks)
