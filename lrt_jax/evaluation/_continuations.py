"""Which tokens an answer is: splitting ``prompt + answer`` into prompt ids and answer ids.

A scorer asks how likely the model finds an answer after a prompt. The answer's
tokens are read off the tokenization of the whole text ``prompt + answer`` (what the
model would see) minus the tokenization of the prompt alone, as lm-evaluation-harness
does; that split is only meaningful when the prompt's tokens are a prefix of the
whole text's tokens, i.e. when no token straddles the boundary, which is checked.

A/B answers are letters appended to a prompt ending with ``"("`` (see
:mod:`lrt_jax.tasks`); persona answers are ``fmt.answer_text("Yes")``; both must be a
single token to be scored from one next-token distribution.
"""

from __future__ import annotations

from typing import Sequence


def _token_ids(tokenizer, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    if tokenizer is None:
        raise ValueError("Scoring text items needs the model's tokenizer; load a checkpoint directory that has one.")
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]]


def split_continuations(tokenizer, prompts: Sequence[str], continuations: Sequence[str], *,
                        add_special_tokens: bool) -> list[tuple[list[int], list[int]]]:
    """``(prompt_ids, continuation_ids)`` for each pair, with ``prompt_ids + continuation_ids``
    equal to the tokens of ``prompt + continuation``.

    Raises:
      ValueError: when a continuation is empty or shares a token with the end of its
        prompt, naming the pair and the tokens.
    """
    wholes = _token_ids(tokenizer, [p + c for p, c in zip(prompts, continuations)], add_special_tokens)
    contexts = _token_ids(tokenizer, prompts, add_special_tokens)
    pairs = []
    for index, (whole, context, continuation) in enumerate(zip(wholes, contexts, continuations)):
        if whole[:len(context)] != context or len(whole) == len(context):
            raise ValueError(
                f"Pair {index}: the tokens of prompt + {continuation!r} do not extend the prompt's tokens "
                f"(prompt ends {context[-3:]}, whole text ends {whole[-4:]}): the answer merges with the end of "
                "the prompt or is empty. Use a prompt format whose answer starts a new token (e.g. the answer "
                "separator of lrt_jax.tasks.PromptFormat) or a different answer text."
            )
        pairs.append((context, whole[len(context):]))
    return pairs


def single_token_answers(tokenizer, prompts: Sequence[str], answers: Sequence[Sequence[str]], *,
                         add_special_tokens: bool) -> list[list[int]]:
    """Token id of each answer after its prompt: ``[n_prompts][n_answers]``.

    Args:
      tokenizer: the model's tokenizer.
      prompts: ``n`` prompt texts.
      answers: for each prompt, the answer texts appended to it (e.g. ``("A", "B")``).
      add_special_tokens: as the prompts are encoded for the model.

    Raises:
      ValueError: when an answer is more than one token, with what to do instead.
    """
    n_answers = len(answers[0]) if answers else 0
    flat_prompts = [p for p, row in zip(prompts, answers) for _ in row]
    flat_answers = [a for row in answers for a in row]
    pairs = split_continuations(tokenizer, flat_prompts, flat_answers, add_special_tokens=add_special_tokens)
    for index, ((_, ids), answer) in enumerate(zip(pairs, flat_answers)):
        if len(ids) != 1:
            raise ValueError(
                f"Answer {answer!r} of prompt {index // n_answers} is {len(ids)} tokens {ids} in this "
                "tokenizer; a propensity compares single next tokens. Use answers that are one token (e.g. the "
                "letters of A/B items, or 'Yes'/'No' with the format's separator), or score them as multiple "
                "choice with lrt_jax.evaluation.score_multiple_choice."
            )
    ids = [[pairs[i * n_answers + j][1][0] for j in range(n_answers)] for i in range(len(prompts))]
    check_answers_are_distinct_known_tokens(tokenizer, ids, answers)
    return ids


def check_answers_are_distinct_known_tokens(tokenizer, ids, answers) -> None:
    """Refuse answers that are the unknown token, or one token for two answers: either makes every
    propensity 0 (or meaningless) without any other sign."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    for index, (row_ids, row_answers) in enumerate(zip(ids, answers)):
        if unknown is not None and unknown in row_ids:
            answer = row_answers[row_ids.index(unknown)]
            raise ValueError(
                f"Answer {answer!r} of prompt {index} is the tokenizer's unknown token {tokenizer.unk_token!r}: the "
                "model cannot tell the answers apart. Use answer texts in the tokenizer's vocabulary (check "
                "--format / the answer letters).")
        if len(set(row_ids)) != len(row_ids):
            raise ValueError(f"Answers {tuple(row_answers)} of prompt {index} are the same token {row_ids}; "
                             "a propensity needs answers that differ.")
