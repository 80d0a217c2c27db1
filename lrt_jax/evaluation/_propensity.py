"""Propensity of A/B and yes/no items: how strongly the model prefers the behaviour-matching answer.

An item is a prompt and two single-token answers, *matching* and *not matching* the
behaviour: the letters of a CAA A/B item after the prompt's ``"("``, or ``"Yes"`` /
``"No"`` of a persona item after the format's answer separator. The model's
next-token distribution at the end of the prompt gives both log-probabilities:

* ``"logit_diff"`` — ``log p(matching) − log p(not matching)``, the LRT paper's
  propensity. It *is* the log-prob difference: the softmax normaliser cancels, so the
  logit difference and the log-prob difference are one number.
* ``"p_matching"`` — ``p(matching) / (p(matching) + p(not matching))``, CAA's
  behaviour probability, ``= sigmoid(logit_diff)``.

Steering adds ``α · v`` at a site; :func:`steered_answer_logprobs` evaluates every
vector × α for a batch of items in one compiled call, and only the answer
log-probabilities ``[k, a, batch, 2]`` leave it.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from lrt_jax.evaluation._continuations import single_token_answers
from lrt_jax.evaluation._steering_grid import (
    check_steering_grid, final_hidden_states, named_vector_stack, over_steering_grid,
    records_from_grid)
from lrt_jax.model import unembed
from lrt_jax._run import check_inputs, reduce_over_sequence
from lrt_jax.lm import LM
from lrt_jax.results import ResultsTable
from lrt_jax.tasks import ABItem, PersonaItem, PromptFormat, format_ab_prompt, format_persona_prompt
from lrt_jax.text import encode, fixed_size_batches

PROPENSITY_METRICS = ("logit_diff", "p_matching")


@functools.partial(jax.jit, static_argnames=("config", "site", "positions", "normalize"))
def steered_answer_logprobs(config, params, tokens, mask, answer_ids, vectors, alphas, *, site, positions="all",
                            normalize=None) -> jax.Array:
    """Next-token log-probabilities of given answers after each prompt, for every vector × α.

    Args:
      config, params: the model (``lm.config``, ``lm.params``).
      tokens: int ``[batch, seq]`` prompts, padded on either side.
      mask: bool ``[batch, seq]``, true on real tokens.
      answer_ids: int ``[batch, n_answers]``, the answer tokens of each row.
      vectors: ``[k, d_model]`` steering vectors, or ``None`` for an unsteered pass.
      alphas: ``[a]`` strengths (ignored without vectors).
      site, positions, normalize: as in :class:`lrt_jax.Add`.

    Returns:
      float32 ``[k, a, batch, n_answers]`` (``[1, 1, batch, n_answers]`` without vectors).
    """

    def score(steering):
        hidden = final_hidden_states(config, params, tokens, mask, steering)
        logprobs = jax.nn.log_softmax(unembed(config, params, reduce_over_sequence(hidden, mask, "last")), axis=-1)
        return jnp.take_along_axis(logprobs, answer_ids, axis=-1)

    return over_steering_grid(score, vectors, alphas, site=site, positions=positions, normalize=normalize)


def propensity_from_logprobs(answer_logprobs, metric: str):
    """``[..., 2]`` (matching, not matching) log-probs → ``[...]`` propensity (see the module docstring)."""
    difference = answer_logprobs[..., 0] - answer_logprobs[..., 1]
    if metric == "logit_diff":
        return difference
    if metric == "p_matching":
        return jax.nn.sigmoid(difference)
    raise ValueError(f"metric must be one of {PROPENSITY_METRICS}; got {metric!r}.")


def two_answer_prompts(items: Sequence[ABItem | PersonaItem], fmt: PromptFormat, tokenizer
                       ) -> tuple[list[str], list[tuple[str, str]]]:
    """Prompts and ``(matching, not matching)`` answer texts to append to them."""
    prompts, answers = [], []
    for index, item in enumerate(items):
        if isinstance(item, ABItem):
            prompts.append(format_ab_prompt(item, fmt, tokenizer))
            answers.append((item.answer_matching, item.answer_not_matching))
        elif isinstance(item, PersonaItem):
            prompts.append(format_persona_prompt(item, fmt, tokenizer))
            answers.append((fmt.answer_text(item.answer_matching), fmt.answer_text(item.answer_not_matching)))
        else:
            raise TypeError(f"Item {index} is a {type(item).__name__}; propensity scores ABItem and PersonaItem "
                            "(lrt_jax.tasks.load_caa_ab, load_persona).")
    return prompts, answers


def score_propensity(lm: LM, items: Sequence[ABItem | PersonaItem], *, fmt: PromptFormat,
                     vectors: Mapping | None = None, alphas=(0.0,), site: str | None = None, positions="all",
                     normalize=None, metric: str = "logit_diff", batch_size: int = 32, task: str = "ab",
                     progress: bool = False) -> ResultsTable:
    """Propensity of each item under every vector × α, as tidy records.

    Args:
      lm: the model, with its tokenizer.
      items: A/B items (:func:`lrt_jax.tasks.load_caa_ab`) or persona items
        (:func:`lrt_jax.tasks.load_persona`).
      fmt: how questions become prompts.
      vectors: ``{name: SteeringVector or [d_model] array}``; ``None`` scores the model
        unsteered (vector ``"unsteered"``, α 0).
      alphas: strengths ``[a]``.
      site, positions, normalize: where and how the vectors are added (:class:`lrt_jax.Add`).
      metric: ``"logit_diff"`` or ``"p_matching"`` (module docstring).
      batch_size: items per compiled call; memory grows with ``k · a · batch_size``.
      task: the ``task`` column of the records.
      progress: show a progress bar over batches.

    Returns:
      A :class:`~lrt_jax.results.ResultsTable` with ``len(vectors) · len(alphas) · len(items)`` rows.

    Example::

        items = lrt_jax.tasks.load_caa_ab("caa/test/sycophancy/test_dataset_ab.json")
        table = score_propensity(lm, items, fmt=PromptFormat("plain"), site="layers.12.resid_post",
                                 vectors={"native": vector}, alphas=np.linspace(-8, 8, 16))
    """
    if metric not in PROPENSITY_METRICS:
        raise ValueError(f"metric must be one of {PROPENSITY_METRICS}; got {metric!r}.")
    if not items:
        raise ValueError("items is empty; load some with lrt_jax.tasks.load_caa_ab or load_persona.")
    prompts, answers = two_answer_prompts(items, fmt, lm.tokenizer)
    answer_ids = np.asarray(single_token_answers(lm.tokenizer, prompts, answers,
                                                 add_special_tokens=fmt.add_special_tokens), np.int32)
    batch = encode(lm, prompts, add_special_tokens=fmt.add_special_tokens)
    tokens, mask = check_inputs(lm.config, batch.tokens, batch.attention_mask)
    names, stack = named_vector_stack(lm, vectors, site)
    alphas = check_steering_grid(lm, stack, alphas, site=site, positions=positions, normalize=normalize,
                                 batch=min(batch_size, len(items)), seq=tokens.shape[1])

    chunks = []
    batches = list(fixed_size_batches(len(items), min(batch_size, len(items))))
    for _, count, rows in tqdm(batches, desc=f"score {task}", unit="batch", disable=not progress):
        logprobs = steered_answer_logprobs(lm.config, lm.params, tokens[rows], mask[rows], answer_ids[rows], stack,
                                           alphas, site=site, positions=positions, normalize=normalize)
        chunks.append(np.asarray(propensity_from_logprobs(logprobs, metric))[:, :, :count])
    values = np.concatenate(chunks, axis=-1)
    return ResultsTable(tuple(records_from_grid(values, task=task, model=lm.name, vector_names=names, alphas=alphas,
                                                items=range(len(items)), metric=metric)))
