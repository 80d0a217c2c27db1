"""Paired activations of two models on the same texts: one row per token, or per word.

Two models that share a tokenizer (an organism family, Pythia sizes, Gemma-2 sizes)
see the same tokens, so row ``i`` of the source matrix and row ``i`` of the target
matrix are the same token in the same context — the data an activation map is fitted
on (``pairing="tokens"``). Models with different vocabularies cut a text into
different tokens; words still pair up. With ``pairing="words"`` row ``i`` is one word
(a whitespace-separated span) at its **last** token in each model — the position
where a causal model has read the whole word — located through character offsets
(:func:`lrt_jax.knowledge.token_alignment.align_words`). ``"auto"`` (the default)
pairs tokens when the vocabularies are equal and words otherwise. The capture itself
is the core's :func:`lrt_jax.capture_text_tokens`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence

import numpy as np

from lrt_jax._capture_texts import capture_text_tokens
from lrt_jax.knowledge.token_alignment import find_word_spans, locate_words
from lrt_jax.lm import LM

Pairing = Literal["auto", "tokens", "words"]


class PairedActivations(NamedTuple):
    """``source[site] [n_rows, d_source]``, ``target[site] [n_rows, d_target]``, and the text of each row.

    ``pairing`` says what a row is: ``"tokens"`` (one shared token) or ``"words"`` (one
    word, at its last token in each model).
    """

    source: dict[str, np.ndarray]
    target: dict[str, np.ndarray]
    text_index: np.ndarray  # [n_rows] index of the text each row came from
    pairing: str = "tokens"


def _check_tokenizers(source: LM, target: LM) -> None:
    for lm in (source, target):
        if lm.tokenizer is None:
            raise ValueError(f"Model {lm.name!r} has no tokenizer; paired activations need text.")


def same_tokenizer(source: LM, target: LM) -> bool:
    """Whether both models tokenize text identically (same vocabulary)."""
    _check_tokenizers(source, target)
    return source.tokenizer.get_vocab() == target.tokenizer.get_vocab()


def check_same_tokenizer(source: LM, target: LM) -> None:
    """Raise unless both models tokenize text identically (same vocabulary)."""
    if not same_tokenizer(source, target):
        raise ValueError(
            f"{source.name!r} and {target.name!r} have different vocabularies, so their tokens do not pair up. "
            "Pair them word by word (pairing='words'), through lrt_jax.knowledge.token_alignment."
        )


def word_rows(lm: LM, texts: Sequence[str], spans) -> tuple[np.ndarray, np.ndarray]:
    """Per word of ``texts``, the row of its last token in ``capture_text_tokens(lm, texts)``, and whether it has one.

    Returns ``(rows [batch, n_words] int64, covered [batch, n_words] bool, lengths [batch])``: rows
    index the flattened real tokens (text 0's first, then text 1's, …); ``lengths`` counts each text's tokens.
    """
    side, covered = locate_words(lm.tokenizer, texts, spans)
    lengths = side.attention_mask.sum(axis=1)
    first_slot = side.tokens.shape[1] - lengths  # left padding
    first_row = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = first_row[:, None] + side.last_token_index.astype(np.int64) - first_slot[:, None]
    return rows, covered, lengths


def paired_token_activations(source: LM, target: LM, texts: Sequence[str], source_sites: Sequence[str],
                             target_sites: Sequence[str], *, batch_size: int = 32, progress: bool = True,
                             pairing: Pairing = "auto") -> PairedActivations:
    """Token- (or word-) aligned activations of ``source`` and ``target`` on the same ``texts`` (module doc).

    Args:
      source, target: models with tokenizers (fast ones, for ``pairing="words"``).
      texts: the texts both read.
      source_sites, target_sites: sites to capture in each model.
      batch_size: texts per compiled call.
      progress: show capture progress bars.
      pairing: ``"auto"``, ``"tokens"`` (refuses different vocabularies) or ``"words"``.
    """
    if pairing not in ("auto", "tokens", "words"):
        raise ValueError(f"pairing must be 'auto', 'tokens' or 'words'; got {pairing!r}.")
    if pairing == "tokens":
        check_same_tokenizer(source, target)
    elif pairing == "auto":
        pairing = "tokens" if same_tokenizer(source, target) else "words"
    options = dict(batch_size=batch_size, progress=progress, dtype=None)
    texts = [texts] if isinstance(texts, str) else list(texts)
    source_acts, text_index = capture_text_tokens(source, texts, source_sites, **options)
    target_acts, target_text_index = capture_text_tokens(target, texts, target_sites, **options)
    if pairing == "tokens":
        return PairedActivations(source_acts, target_acts, text_index, "tokens")
    spans = [find_word_spans(text) for text in texts]
    source_rows, source_covered, source_lengths = word_rows(source, texts, spans)
    target_rows, target_covered, target_lengths = word_rows(target, texts, spans)
    for lengths, index, lm in ((source_lengths, text_index, source), (target_lengths, target_text_index, target)):
        if not np.array_equal(np.bincount(index, minlength=len(texts)), lengths):
            raise RuntimeError(f"The offsets of {lm.name!r}'s tokenizer disagree with its encoding; "
                               "word pairing needs a fast tokenizer whose encode adds the same tokens.")
    keep = source_covered & target_covered  # false past each text's last word
    source_pick, target_pick = source_rows[keep], target_rows[keep]
    return PairedActivations({site: acts[source_pick] for site, acts in source_acts.items()},
                             {site: acts[target_pick] for site, acts in target_acts.items()},
                             np.nonzero(keep)[0], "words")
