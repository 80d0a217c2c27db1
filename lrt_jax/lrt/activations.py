"""Paired activations of two models on the same texts, one row per real token.

Two models that share a tokenizer (an organism family, Pythia sizes, Gemma-2 sizes)
see the same tokens, so row ``i`` of the source matrix and row ``i`` of the target
matrix are the same token in the same context — the data an activation map is fitted
on. Models with different vocabularies need the character-offset alignment of
:mod:`lrt_jax.knowledge.token_alignment` instead; this module refuses them. The
capture itself is the core's :func:`lrt_jax.capture_text_tokens`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from lrt_jax._capture_texts import capture_text_tokens, capture_texts
from lrt_jax.lm import LM


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


def paired_token_activations(source: LM, target: LM, texts: Sequence[str], source_sites: Sequence[str],
                             target_sites: Sequence[str], *, batch_size: int = 32,
                             progress: bool = True) -> PairedActivations:
    """Token-aligned activations of ``source`` and ``target`` on the same ``texts``."""
    check_same_tokenizer(source, target)
    options = dict(batch_size=batch_size, progress=progress, dtype=None)
    source_acts, text_index = capture_text_tokens(source, texts, source_sites, **options)
    target_acts, _ = capture_text_tokens(target, texts, target_sites, **options)
    return PairedActivations(source_acts, target_acts, text_index)

