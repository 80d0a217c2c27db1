"""Is an organism good enough for the science? Three numbers per attribute.

* ``context_gap`` — propensity after context prompts of the positive value minus
  after context prompts of the negative value (see :mod:`lrt_jax.organisms.probes`).
  Large means the next-token distribution depends on the document's attribute.
* ``probe_accuracy`` — a difference-of-means direction fitted on one set of
  contrastive pairs at ``layers.{layer}.resid_post`` (last token) classifies a fresh
  set of pairs by the sign of the projection minus the midpoint. Near 1 means the
  attribute is linearly readable there.
* ``steering_shift`` — the change of the mean neutral-prompt propensity when that
  direction, scaled to ``steering_scale`` times its own norm, is added at the same
  site on every token. Positive means the model's own vector steers it.
"""

from __future__ import annotations

import numpy as np

import lrt_jax
from lrt_jax.interventions import Add
from lrt_jax.lm import LM
from lrt_jax.organisms import lexicons, probes


def encode_prompts(lm: LM, texts) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ``(tokens, attention_mask)``, both ``[len(texts), longest]``."""
    batch = lm.tokenizer(list(texts), padding=True, return_tensors="np")
    return batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)


def mean_propensity(lm: LM, probe: probes.AttributeProbe, interventions=()) -> float:
    """Mean over ``probe.prompts`` of the propensity for ``probe.positive_value``."""
    tokens, mask = encode_prompts(lm, probe.prompts)
    logits = lrt_jax.forward(lm, tokens, attention_mask=mask, interventions=interventions)
    last = logits[np.arange(len(tokens)), mask.sum(axis=1) - 1]
    positive = probes.answer_token_ids(lm.tokenizer, probe.positive_answers)
    negative = probes.answer_token_ids(lm.tokenizer, probe.negative_answers)
    return float(probes.attribute_propensity(last, positive, negative).mean())


def measure_attribute_signal(lm: LM, attribute: str, layer: int, *, count: int = 64, steering_scale: float = 1.0) -> dict:
    """``context_gap``, ``probe_accuracy`` and ``steering_shift`` of ``attribute`` (module doc)."""
    positive_value, negative_value = lexicons.attribute_values(attribute)[:2]
    gap = mean_propensity(lm, probes.make_attribute_probe(attribute, context_value=positive_value, count=count))
    gap -= mean_propensity(lm, probes.make_attribute_probe(attribute, context_value=negative_value, count=count))

    site = f"layers.{layer}.resid_post"
    fit_pairs = probes.make_contrastive_pairs(attribute, count=count, seed=1)
    test_pairs = probes.make_contrastive_pairs(attribute, count=count, seed=2)

    def last_token(texts):
        return lrt_jax.capture_texts(lm, texts, [site], batch_size=count, progress=False)[site]

    fit_positive, fit_negative = last_token(fit_pairs.positive_texts), last_token(fit_pairs.negative_texts)
    direction = fit_positive.mean(0) - fit_negative.mean(0)
    midpoint = (fit_positive.mean(0) + fit_negative.mean(0)) / 2
    test_positive, test_negative = last_token(test_pairs.positive_texts), last_token(test_pairs.negative_texts)
    scores_positive = (test_positive - midpoint) @ direction
    scores_negative = (test_negative - midpoint) @ direction
    accuracy = (np.mean(scores_positive > 0) + np.mean(scores_negative < 0)) / 2

    neutral = probes.make_attribute_probe(attribute, count=count)
    steered = Add(site, direction, steering_scale)
    shift = mean_propensity(lm, neutral, steered) - mean_propensity(lm, neutral)
    return {
        "context_gap": gap,
        "probe_accuracy": float(accuracy),
        "steering_shift": shift,
        "direction_norm": float(np.linalg.norm(direction)),
    }
