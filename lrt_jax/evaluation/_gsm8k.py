"""GSM8K exact match under steering, through greedy KV-cached generation.

Each problem is answered by greedy :func:`lrt_jax.generate`; the final number is read
from the generation with :func:`lrt_jax.tasks.extract_final_answer` (the number after
the last ``####``, the GSM8K reference convention — a strict match: a generation
without that line scores 0) and compared numerically with the reference answer.

Unlike the log-probability scorers this one loops over the steering settings in
Python, one generation call per vector × α × batch: each setting produces different
tokens and stops at a different step, so there is no shared work to vmap, and a
vmapped ``while_loop`` would run every setting as long as the slowest one.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from lrt_jax.evaluation._steering_grid import (
    check_steering_grid, named_vector_stack, records_from_grid)
from lrt_jax._generate import generate
from lrt_jax.interventions import Add
from lrt_jax.lm import LM
from lrt_jax.results import ResultsTable
from lrt_jax.tasks import GSM8KItem, PromptFormat, extract_final_answer, format_gsm8k_prompt
from lrt_jax.text import decode, encode, fixed_size_batches


def is_exact_match(generation: str, reference: str) -> bool:
    """Whether the generation's final ``#### <number>`` equals ``reference`` as a number."""
    answer = extract_final_answer(generation)
    return answer is not None and float(answer) == float(reference)


def score_gsm8k(lm: LM, items: Sequence[GSM8KItem], *, fmt: PromptFormat, max_new_tokens: int,
                vectors: Mapping | None = None, alphas=(0.0,), site: str | None = None, positions="all",
                normalize=None, batch_size: int = 8, task: str = "gsm8k", progress: bool = False,
                ) -> tuple[ResultsTable, dict[tuple[str, float], list[str]]]:
    """Exact match of greedy generations under every vector × α (metric ``"exact_match"``, 0 or 1).

    Args:
      lm: the model, with its tokenizer (its end-of-sequence token stops a row).
      items: :class:`~lrt_jax.tasks.GSM8KItem` problems (:func:`lrt_jax.tasks.load_gsm8k`).
      fmt: how problems become prompts.
      max_new_tokens: generation budget per problem.
      vectors, alphas, site, positions, normalize: the steering settings, as in
        :func:`lrt_jax.evaluation.score_propensity`; ``positions`` may also be
        ``"generated"`` here.
      batch_size: problems per generation call.
      task: the ``task`` column of the records.
      progress: show a progress bar over generation calls.

    Returns:
      ``(table, generations)``: the records and ``{(vector name, α): [text per item]}``.
    """
    if not items:
        raise ValueError("items is empty; load some with lrt_jax.tasks.load_gsm8k.")
    prompts = [format_gsm8k_prompt(item, fmt, lm.tokenizer) for item in items]
    batch = encode(lm, prompts, add_special_tokens=fmt.add_special_tokens)
    names, stack = named_vector_stack(lm, vectors, site)
    # "generated" is checked by generate itself; the grid check only knows forward passes.
    alphas = check_steering_grid(lm, stack, alphas, site=site, positions="all" if positions == "generated" else positions,
                                 normalize=normalize, batch=1, seq=batch.tokens.shape[1] + max_new_tokens)
    eos = lm.tokenizer.eos_token_id
    stop_tokens = () if eos is None else (int(eos),)

    batches = list(fixed_size_batches(len(items), min(batch_size, len(items))))
    settings = [(k, a) for k in range(len(names)) for a in range(len(alphas))]
    matches = np.zeros((len(names), len(alphas), len(items)))
    generations = {}
    bar = tqdm(total=len(settings) * len(batches), desc=f"generate {task}", unit="call", disable=not progress)
    for k, a in settings:
        steering = () if stack is None else Add(site, stack[k], alphas[a], positions=positions, normalize=normalize)
        texts = []
        for start, count, rows in batches:
            out = generate(lm, batch.tokens[rows], attention_mask=batch.attention_mask[rows],
                           max_new_tokens=max_new_tokens, stop_tokens=stop_tokens, interventions=steering)
            texts += decode(lm, out.tokens, out.generated_mask)[:count]
            bar.update()
        matches[k, a] = [is_exact_match(text, item.answer) for text, item in zip(texts, items)]
        generations[(names[k], float(alphas[a]))] = texts
    bar.close()
    table = ResultsTable(tuple(records_from_grid(matches, task=task, model=lm.name, vector_names=names, alphas=alphas,
                                                 items=range(len(items)), metric="exact_match")))
    return table, generations
