"""Multiple-choice scoring (TruthfulQA MC1 / MC2) from summed log-probabilities of the choices.

Each choice is scored as a continuation of the question's prompt: its log-probability
``ℓ_j = Σ_t log p(c_j,t | prompt, c_j,<t)`` sums over the choice's tokens only. A
question's choices are rows ``prompt + choice`` of one batch, right-padded to a common
length with a mask, so their different lengths cost nothing but padding. Rows of
several questions share a batch (rows never interact), and all batches have one shape,
so the steering grid compiles once.

With ``P_j = exp(ℓ_j)`` and ``T`` the true choices (TruthfulQA paper, Lin et al. 2022):

* ``"mc1"`` — 1 when the most likely choice is true (MC1 items have one true choice).
* ``"mc2"`` — ``Σ_{j∈T} P_j / Σ_j P_j``, the normalised probability mass on true
  choices, computed with log-sum-exp.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp
from tqdm.auto import tqdm

from lrt_jax.evaluation._continuations import split_continuations
from lrt_jax.evaluation._steering_grid import (
    check_steering_grid, final_hidden_states, named_vector_stack, over_steering_grid, records_from_grid)
from lrt_jax.model import unembed
from lrt_jax._run import check_inputs
from lrt_jax.lm import LM
from lrt_jax.results import ResultsTable
from lrt_jax.tasks import MCItem, PromptFormat, format_mc_prompt
from lrt_jax.text import pad_id_of


@functools.partial(jax.jit, static_argnames=("config", "site", "positions", "normalize"))
def steered_continuation_logprobs(config, params, tokens, mask, predict_positions, target_ids, target_mask, vectors,
                                  alphas, *, site, positions="all", normalize=None) -> jax.Array:
    """Summed log-probability of each row's continuation tokens, for every vector × α.

    Args:
      config, params: the model.
      tokens: int ``[rows, seq]``, ``prompt + continuation`` padded on either side.
      mask: bool ``[rows, seq]``, true on real tokens.
      predict_positions: int ``[rows, c]``, the position whose output predicts each
        continuation token (the token just before it).
      target_ids: int ``[rows, c]``, the continuation tokens.
      target_mask: bool ``[rows, c]``, true for real continuation tokens (rows differ in length).
      vectors, alphas, site, positions, normalize: the steering grid, as in
        :func:`lrt_jax.evaluation.steered_answer_logprobs`.

    Returns:
      float32 ``[k, a, rows]`` (``[1, 1, rows]`` without vectors).
    """

    def score(steering):
        hidden = final_hidden_states(config, params, tokens, mask, steering)
        window = jnp.take_along_axis(hidden, predict_positions[..., None], axis=1)
        logprobs = jax.nn.log_softmax(unembed(config, params, window), axis=-1)
        chosen = jnp.take_along_axis(logprobs, target_ids[..., None], axis=-1)[..., 0]
        return jnp.sum(jnp.where(target_mask, chosen, 0.0), axis=-1)

    return over_steering_grid(score, vectors, alphas, site=site, positions=positions, normalize=normalize)


def mc_scores(choice_logprobs, labels) -> tuple[np.ndarray, np.ndarray]:
    """MC1 and MC2 from log-probs ``[..., n_choices]`` and 0/1 ``labels [n_choices]``: two ``[...]`` arrays."""
    choice_logprobs, true = np.asarray(choice_logprobs, np.float64), np.asarray(labels) == 1
    mc1 = true[np.argmax(choice_logprobs, axis=-1)].astype(np.float64)
    mc2 = np.exp(logsumexp(choice_logprobs[..., true], axis=-1) - logsumexp(choice_logprobs, axis=-1))
    return mc1, mc2


def _right_padded_rows(pairs, pad_id: int):
    """Token rows ``prompt + continuation`` right-padded, and the continuation windows."""
    seq = max(len(p) + len(c) for p, c in pairs)
    width = max(len(c) for _, c in pairs)
    tokens = np.full((len(pairs), seq), pad_id, np.int32)
    mask = np.zeros((len(pairs), seq), bool)
    predict = np.zeros((len(pairs), width), np.int32)
    targets = np.full((len(pairs), width), pad_id, np.int32)
    target_mask = np.zeros((len(pairs), width), bool)
    for row, (prompt, continuation) in enumerate(pairs):
        length = len(prompt) + len(continuation)
        tokens[row, :length] = prompt + continuation
        mask[row, :length] = True
        predict[row, :len(continuation)] = np.arange(len(prompt) - 1, length - 1)
        targets[row, :len(continuation)] = continuation
        target_mask[row, :len(continuation)] = True
    return tokens, mask, predict, targets, target_mask


def _question_batches(choice_counts: Sequence[int], rows_per_batch: int) -> list[list[int]]:
    """Consecutive questions grouped so that each group's choices fit one batch."""
    groups, current, used = [], [], 0
    for question, count in enumerate(choice_counts):
        if current and used + count > rows_per_batch:
            groups.append(current)
            current, used = [], 0
        current.append(question)
        used += count
    return groups + [current]


def score_multiple_choice(lm: LM, items: Sequence[MCItem], *, fmt: PromptFormat, vectors: Mapping | None = None,
                          alphas=(0.0,), site: str | None = None, positions="all", normalize=None,
                          batch_size: int = 32, task: str = "truthfulqa", progress: bool = False) -> ResultsTable:
    """MC1 and MC2 of each question under every vector × α, as tidy records (metrics ``"mc1"``, ``"mc2"``).

    Args:
      lm: the model, with its tokenizer.
      items: :class:`~lrt_jax.tasks.MCItem` questions (:func:`lrt_jax.tasks.load_truthfulqa_mc`).
      fmt: how questions become prompts; each choice follows ``fmt.answer_text(choice)``.
      vectors, alphas, site, positions, normalize: the steering grid, as in
        :func:`lrt_jax.evaluation.score_propensity`.
      batch_size: rows (choices) per compiled call; a question never spans two calls,
        so a question with more choices widens every batch to its count.
      task: the ``task`` column of the records.
      progress: show a progress bar over batches.

    Returns:
      A :class:`~lrt_jax.results.ResultsTable` with two rows per question × vector × α.
    """
    if not items:
        raise ValueError("items is empty; load some with lrt_jax.tasks.load_truthfulqa_mc.")
    prompts = [format_mc_prompt(item, fmt, lm.tokenizer) for item in items]
    flat_prompts = [prompt for prompt, item in zip(prompts, items) for _ in item.choices]
    flat_choices = [fmt.answer_text(choice) for item in items for choice in item.choices]
    pairs = split_continuations(lm.tokenizer, flat_prompts, flat_choices, add_special_tokens=fmt.add_special_tokens)
    tokens, mask, predict, targets, target_mask = _right_padded_rows(pairs, pad_id_of(lm.tokenizer))
    tokens, mask = check_inputs(lm.config, tokens, mask)
    counts = [len(item.choices) for item in items]
    first_row = np.cumsum([0, *counts])
    rows_per_batch = max(batch_size, max(counts))
    names, stack = named_vector_stack(lm, vectors, site)
    alphas = check_steering_grid(lm, stack, alphas, site=site, positions=positions, normalize=normalize,
                                 batch=rows_per_batch, seq=tokens.shape[1])

    mc1 = np.zeros((len(names), len(alphas), len(items)))
    mc2 = np.zeros_like(mc1)
    groups = _question_batches(counts, rows_per_batch)
    for questions in tqdm(groups, desc=f"score {task}", unit="batch", disable=not progress):
        start, stop = first_row[questions[0]], first_row[questions[-1] + 1]
        rows = np.minimum(np.arange(start, start + rows_per_batch), stop - 1)
        logprobs = np.asarray(steered_continuation_logprobs(
            lm.config, lm.params, tokens[rows], mask[rows], predict[rows], targets[rows], target_mask[rows], stack,
            alphas, site=site, positions=positions, normalize=normalize))
        for question in questions:
            choice_rows = slice(first_row[question] - start, first_row[question + 1] - start)
            mc1[:, :, question], mc2[:, :, question] = mc_scores(logprobs[:, :, choice_rows], items[question].labels)
    common = dict(task=task, model=lm.name, vector_names=names, alphas=alphas, items=range(len(items)))
    return ResultsTable(tuple(records_from_grid(mc1, metric="mc1", **common)
                              + records_from_grid(mc2, metric="mc2", **common)))
