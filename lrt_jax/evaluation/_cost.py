"""The cost of steering: how far steering moves the model's next-token distribution on ordinary text.

For each text (the item) and every vector × α:

* ``"kl_next_token"`` — the mean, over the text's real positions, of
  ``KL(steered ‖ unsteered)`` of the next-token distribution, ``Σ_v p_s (log p_s − log p_u)``.
* ``"nll"`` — the mean negative log-likelihood of the text's tokens after the first
  (each predicted from the positions before it) under the steered model.
* ``"perplexity"`` — ``exp`` of that text's ``"nll"``.

:func:`steered_next_token_cost` computes the unsteered distribution once per batch and
every vector × α in the same compiled, vmapped call (:mod:`._steering_grid`); only the
per-row means ``[k, a, batch]`` leave it. Log-softmax runs in float32, and padding
(left, from :func:`lrt_jax.text.encode`) is masked out of every mean.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from lrt_jax.evaluation._steering_grid import (
    check_steering_grid, final_hidden_states, named_vector_stack, over_steering_grid, records_from_grid)
from lrt_jax._run import check_inputs
from lrt_jax.lm import LM
from lrt_jax.model import unembed
from lrt_jax.results import ResultsTable
from lrt_jax.text import encode, fixed_size_batches

COST_METRICS = ("kl_next_token", "nll", "perplexity")


def _next_token_logprobs(config, params, tokens, mask, steering) -> jax.Array:
    hidden = final_hidden_states(config, params, tokens, mask, steering)
    return jax.nn.log_softmax(unembed(config, params, hidden).astype(jnp.float32), axis=-1)


@functools.partial(jax.jit, static_argnames=("config", "site", "positions", "normalize"))
def steered_next_token_cost(config, params, tokens, mask, vectors, alphas, *, site, positions="all",
                            normalize=None) -> tuple[jax.Array, jax.Array]:
    """Mean next-token KL to the unsteered model and mean NLL of each row, for every vector × α.

    Args:
      config, params: the model (``lm.config``, ``lm.params``).
      tokens: int ``[batch, seq]`` texts, padded on either side.
      mask: bool ``[batch, seq]``, true on real tokens.
      vectors: ``[k, d_model]`` steering vectors, or ``None`` for an unsteered pass.
      alphas: ``[a]`` strengths (ignored without vectors).
      site, positions, normalize: as in :class:`lrt_jax.Add`.

    Returns:
      ``(kl, nll)``, float32 ``[k, a, batch]`` each (``[1, 1, batch]`` without vectors):
      KL averaged over each row's real positions, NLL over its real tokens that follow
      a real token.
    """
    mask = mask.astype(bool)
    real = mask.astype(jnp.float32)
    predicted = (mask[:, :-1] & mask[:, 1:]).astype(jnp.float32)  # position t predicts real token t + 1
    base = _next_token_logprobs(config, params, tokens, mask, None)

    def score(steering):
        logprobs = base if steering is None else _next_token_logprobs(config, params, tokens, mask, steering)
        kl = jnp.sum(jnp.exp(logprobs) * (logprobs - base), axis=-1)  # [batch, seq]
        kl = jnp.sum(kl * real, axis=-1) / jnp.maximum(jnp.sum(real, axis=-1), 1.0)
        token_logprobs = jnp.take_along_axis(logprobs[:, :-1], tokens[:, 1:, None], axis=-1)[..., 0]
        nll = -jnp.sum(token_logprobs * predicted, axis=-1) / jnp.maximum(jnp.sum(predicted, axis=-1), 1.0)
        return jnp.stack([kl, nll])

    costs = over_steering_grid(score, vectors, alphas, site=site, positions=positions, normalize=normalize)
    return costs[:, :, 0], costs[:, :, 1]


def score_steering_cost(lm: LM, texts: Sequence[str], *, vectors: Mapping | None = None, alphas=(0.0,),
                        site: str | None = None, positions="all", normalize=None, batch_size: int = 16,
                        task: str = "cost", progress: bool = False) -> ResultsTable:
    """Next-token KL to the unsteered model, NLL and perplexity of each text under every vector × α.

    Args:
      lm: the model, with its tokenizer.
      texts: plain texts (each must encode to at least two tokens, special tokens included).
      vectors: ``{name: SteeringVector or [d_model] array}``; ``None`` scores the model
        unsteered (vector ``"unsteered"``, α 0, KL 0).
      alphas: strengths ``[a]``.
      site, positions, normalize: where and how the vectors are added (:class:`lrt_jax.Add`).
      batch_size: texts per compiled call; memory grows with ``k · a · batch_size · seq · vocab``.
      task: the ``task`` column of the records.
      progress: show a progress bar over batches.

    Returns:
      A :class:`~lrt_jax.results.ResultsTable` with metrics ``"kl_next_token"``, ``"nll"`` and
      ``"perplexity"`` for each vector × α × text (item = the text's index).

    Example::

        table = score_steering_cost(lm, texts, site="layers.12.resid_post", vectors={"native": vector},
                                    alphas=np.linspace(-8, 8, 9))
        print(table.select(metric="perplexity"))
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("texts is empty; pass some plain texts to measure the cost of steering on.")
    batch = encode(lm, texts)
    tokens, mask = check_inputs(lm.config, batch.tokens, batch.attention_mask)
    short = [i for i, n in enumerate(np.asarray(batch.attention_mask).sum(axis=1)) if n < 2]
    if short:
        raise ValueError(f"texts {short} encode to a single token; the NLL needs at least two.")
    names, stack = named_vector_stack(lm, vectors, site)
    size = min(batch_size, len(texts))
    alphas = check_steering_grid(lm, stack, alphas, site=site, positions=positions, normalize=normalize,
                                 batch=size, seq=tokens.shape[1])

    kl_chunks, nll_chunks = [], []
    for _, count, rows in tqdm(list(fixed_size_batches(len(texts), size)), desc=f"score {task}", unit="batch",
                               disable=not progress):
        kl, nll = steered_next_token_cost(lm.config, lm.params, tokens[rows], mask[rows], stack, alphas,
                                          site=site, positions=positions, normalize=normalize)
        kl_chunks.append(np.asarray(kl)[:, :, :count])
        nll_chunks.append(np.asarray(nll)[:, :, :count])
    kl, nll = np.concatenate(kl_chunks, axis=-1), np.concatenate(nll_chunks, axis=-1)
    records = []
    for metric, values in (("kl_next_token", kl), ("nll", nll), ("perplexity", np.exp(nll))):
        records += records_from_grid(values, task=task, model=lm.name, vector_names=names, alphas=alphas,
                                     items=range(len(texts)), metric=metric)
    return ResultsTable(tuple(records))
