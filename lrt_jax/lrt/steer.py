"""Attribute steering of one model: vectors from contrastive pairs, propensity under a sweep.

The propensity of a prompt is the log-probability margin of the attribute's "+"
answer words over its "−" answer words at the next token (the same quantity as
:func:`lrt_jax.organisms.probes.attribute_propensity`; any two word sets work). A
sweep adds ``α · v/‖v‖`` (scaled by the residual norm by default) at every position
of a site for every α and every vector of a stack in **one** compiled call.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from lrt_jax.evaluation import steered_answer_logprobs
from lrt_jax._generate import generate
from lrt_jax.interventions import Add
from lrt_jax.lm import LM
from lrt_jax._capture_texts import capture_texts
from lrt_jax.steering import SteeringVector, diff_of_means
from lrt_jax.text import decode, encode


def contrastive_vector(lm: LM, positive_texts: Sequence[str], negative_texts: Sequence[str], site: str, *,
                       dataset: str = "", batch_size: int = 64) -> SteeringVector:
    """Difference of means of the last-token activation at ``site`` (CAA), with its provenance."""
    positive = capture_texts(lm, positive_texts, [site], batch_size=batch_size, progress=False)[site]
    negative = capture_texts(lm, negative_texts, [site], batch_size=batch_size, progress=False)[site]
    return diff_of_means(positive, negative, model=lm.name, site=site, position_rule="last_token", dataset=dataset)


def steered_propensity(lm: LM, prompts: Sequence[str], site: str, vectors, alphas, positive_ids, negative_ids, *,
                       normalize: str = "residual") -> np.ndarray:
    """Propensity ``[n_vectors, n_alphas, n_prompts]`` under ``Add(site, v, α)`` at every position.

    The propensity is ``logsumexp log p(positive words) − logsumexp log p(negative words)``
    at the next token; all vectors × α run in one compiled call
    (:func:`lrt_jax.evaluation.steered_answer_logprobs`).

    Args:
      lm: the model (with a tokenizer).
      prompts: texts whose next token shows the attribute.
      site: where to add the vectors, e.g. ``"layers.2.resid_post"``.
      vectors: ``[n_vectors, d_model]``.
      alphas: ``[n_alphas]`` strengths; with ``normalize="residual"`` (default) α is in
        units of the row's mean residual norm, with ``"unit"`` it is the added norm.
      positive_ids, negative_ids: token ids of the two answer word sets.
    """
    batch = encode(lm, list(prompts))
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != lm.config.d_model:
        raise ValueError(f"vectors must be [n_vectors, {lm.config.d_model}] for {lm.name!r}; got {vectors.shape}.")
    n_positive = len(positive_ids)
    answer_ids = np.broadcast_to(np.concatenate([positive_ids, negative_ids]).astype(np.int32),
                                 (len(prompts), n_positive + len(negative_ids)))
    logprobs = steered_answer_logprobs(lm.config, lm.params, jnp.asarray(batch.tokens),
                                       jnp.asarray(batch.attention_mask), jnp.asarray(answer_ids), jnp.asarray(vectors),
                                       jnp.asarray(alphas, jnp.float32), site=site, normalize=normalize)
    return np.asarray(logsumexp(logprobs[..., :n_positive], axis=-1) - logsumexp(logprobs[..., n_positive:], axis=-1))


def generated_word_share(lm: LM, prompts: Sequence[str], site: str, vector, alpha: float,
                         positive_words: Sequence[str], negative_words: Sequence[str], *,
                         max_new_tokens: int = 12, normalize: str = "residual", temperature: float = 1.0,
                         seed: int = 0) -> float:
    """Share of "+" words among the attribute words the model generates under steering (NaN if none).

    Generations are sampled (``temperature``, reproducible from ``seed``): greedy decoding
    gives every prompt nearly the same continuation, which makes the share all-or-nothing.
    """
    batch = encode(lm, list(prompts))
    out = generate(lm, batch.tokens, attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens,
                   temperature=temperature, seed=seed,
                   interventions=Add(site, jnp.asarray(vector, jnp.float32), alpha, positions="all", normalize=normalize))
    words = " ".join(decode(lm, out.tokens, out.generated_mask)).split()
    positive_set, negative_set = set(positive_words), set(negative_words)
    positive = sum(word in positive_set for word in words)
    negative = sum(word in negative_set for word in words)
    return positive / (positive + negative) if positive + negative else float("nan")
