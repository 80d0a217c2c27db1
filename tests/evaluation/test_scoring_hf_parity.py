"""Scores against a straightforward HF PyTorch computation of the same log-probabilities.

The reference runs every prompt (or prompt + choice) alone, unpadded, through the HF
model, takes ``log_softmax`` of its logits and reads the answer tokens by name from
the tokenizer's vocabulary; MC1/MC2 follow the TruthfulQA definitions written out in
NumPy. Ours batches prompts of different lengths (left padding) and choices of
different lengths (right padding) and unembeds only the scored positions. Families:
llama (untied head) and gemma2 (tied head, final logit soft-cap).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import lrt_jax
from lrt_jax.evaluation import score_multiple_choice, score_propensity
from lrt_jax.tasks import ABItem, MCItem, PersonaItem, PromptFormat

import torch
import transformers

TOLERANCE = 1e-4
FORMAT = PromptFormat("plain")
AB_ITEMS = (
    ABItem("w1 w2 w3 Choices : ( A ) w4 ( B ) w5", "A", "B"),
    ABItem("w7 Choices : ( A ) w9 w1 w2 w8 w8 w3 ( B ) w5", "B", "A"),
    ABItem("w11 w12 ?", "A", "B"),
)
PERSONA_ITEMS = (
    PersonaItem("w3 w4 w5 ?", "w3", "Yes", "No", 0.9),
    PersonaItem("w6 ?", "w6", "No", "Yes", 0.8),
)
MC_ITEMS = (
    MCItem("w1 w2 w3", ("w4", "w5 w6 w7", "w8 w9"), (1, 0, 0)),
    MCItem("w3 w3 w20 w21", ("w4 w4 w4 w4 w22", "w5"), (0, 1)),
    MCItem("w30", ("w31 w32", "w33", "w34 w35 w36", "w37"), (1, 0, 1, 0)),
)


@functools.cache
def _hf_model_and_tokenizer(directory):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    return model, transformers.AutoTokenizer.from_pretrained(str(directory))


def _hf_logprobs(directory, text: str):
    model, tokenizer = _hf_model_and_tokenizer(directory)
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return ids, torch.log_softmax(logits.double(), dim=-1).numpy(), tokenizer


def _reference_propensity(directory, prompt: str, matching: str, not_matching: str) -> float:
    _, logprobs, tokenizer = _hf_logprobs(directory, prompt)
    return logprobs[-1, tokenizer.convert_tokens_to_ids(matching)] - logprobs[-1, tokenizer.convert_tokens_to_ids(not_matching)]


def _reference_choice_logprob(directory, prompt: str, choice: str) -> float:
    ids, logprobs, tokenizer = _hf_logprobs(directory, f"{prompt} {choice}")
    n_choice = len(tokenizer(choice, add_special_tokens=False)["input_ids"])
    return sum(logprobs[p - 1, ids[p]] for p in range(len(ids) - n_choice, len(ids)))


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_ab_and_persona_propensity_match_hf(word_checkpoint, family):
    directory = word_checkpoint(family)
    lm = lrt_jax.load(directory)
    ours = score_propensity(lm, AB_ITEMS + PERSONA_ITEMS, fmt=FORMAT, batch_size=4)
    reference = [_reference_propensity(directory, f"Question: {i.question}\nAnswer: (", i.answer_matching,
                                       i.answer_not_matching) for i in AB_ITEMS]
    reference += [_reference_propensity(directory, f"Question: {i.question}\nAnswer:", i.answer_matching,
                                        i.answer_not_matching) for i in PERSONA_ITEMS]
    values = [r.value for r in sorted(ours.records, key=lambda r: r.item)]
    np.testing.assert_allclose(values, reference, atol=TOLERANCE, rtol=0)
    assert np.ptp(reference) > 0.1  # the items differ, so a broadcast bug would show


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_mc1_and_mc2_match_hf(word_checkpoint, family):
    directory = word_checkpoint(family)
    lm = lrt_jax.load(directory)
    ours = score_multiple_choice(lm, MC_ITEMS, fmt=FORMAT, batch_size=5)
    for index, item in enumerate(MC_ITEMS):
        logprobs = [_reference_choice_logprob(directory, f"Question: {item.question}\nAnswer:", c) for c in item.choices]
        probabilities = [math.exp(lp) for lp in logprobs]
        true_mass = sum(p for p, label in zip(probabilities, item.labels) if label == 1)
        expected_mc2 = true_mass / sum(probabilities)
        expected_mc1 = float(item.labels[int(np.argmax(logprobs))] == 1)
        (mc1,) = ours.select(item=index, metric="mc1").records
        (mc2,) = ours.select(item=index, metric="mc2").records
        assert mc1.value == expected_mc1
        assert mc2.value == pytest.approx(expected_mc2, abs=TOLERANCE)
