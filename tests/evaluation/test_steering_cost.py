"""The cost of steering against a direct PyTorch computation on a tiny HF llama.

The reference runs each text alone, unpadded, through the HF model, once plain and
once with a forward hook adding ``α · v`` to layer ``i``'s output (our
``layers.{i}.resid_post``), and computes the next-token KL and perplexity in float64.
Ours batches texts of different lengths (left padding) and every vector × α at once.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import lrt_jax
from lrt_jax.evaluation import score_steering_cost

import torch
import transformers

from hf_steering_hooks import adding_to_layer_output

TOLERANCE = 1e-4
LAYER = 1
SITE = f"layers.{LAYER}.resid_post"
TEXTS = ("w1 w2 w3 w4 w5", "w7 w9", "w11 w12 w13 w14 w15 w16 w17 w18 w3", "w20 w21 w22")
ALPHAS = (-3.0, 0.0, 2.5)


@functools.cache
def _hf_model_and_tokenizer(directory):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    return model, transformers.AutoTokenizer.from_pretrained(str(directory))


def _reference_cost(directory, text: str, vector, alpha: float) -> tuple[float, float]:
    model, tokenizer = _hf_model_and_tokenizer(directory)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        base = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        with adding_to_layer_output(model, LAYER, alpha * torch.as_tensor(np.asarray(vector), dtype=torch.float32)):
            steered = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    kl = (steered.exp() * (steered - base)).sum(-1).mean().item()
    nll = -steered[:-1].gather(-1, ids[0, 1:, None]).mean().item()
    return kl, float(np.exp(nll))


@pytest.fixture(scope="module")
def model(word_checkpoint):
    directory = word_checkpoint("llama")
    return directory, lrt_jax.load(directory)


def _vectors(lm):
    rng = np.random.default_rng(0)
    d = lm.config.d_model
    return {"a": rng.normal(size=d).astype(np.float32), "b": 0.5 * rng.normal(size=d).astype(np.float32)}


def _values(table, **select):
    return np.array([r.value for r in sorted(table.select(**select).records, key=lambda r: r.item)])


def test_kl_and_perplexity_match_hf(model):
    directory, lm = model
    vectors = _vectors(lm)
    table = score_steering_cost(lm, TEXTS, vectors=vectors, alphas=ALPHAS, site=SITE, batch_size=3)
    assert len(table) == 3 * len(vectors) * len(ALPHAS) * len(TEXTS)
    for name, vector in vectors.items():
        for alpha in ALPHAS:
            reference = np.array([_reference_cost(directory, text, vector, alpha) for text in TEXTS])
            kl = _values(table, vector=name, alpha=alpha, metric="kl_next_token")
            perplexity = _values(table, vector=name, alpha=alpha, metric="perplexity")
            nll = _values(table, vector=name, alpha=alpha, metric="nll")
            np.testing.assert_allclose(kl, reference[:, 0], atol=TOLERANCE, rtol=0)
            np.testing.assert_allclose(perplexity, reference[:, 1], atol=TOLERANCE, rtol=TOLERANCE)
            np.testing.assert_allclose(np.exp(nll), perplexity, rtol=1e-6)
            if alpha != 0.0:
                assert kl.min() > 1e-3  # steering does move the distribution, so the comparison is not vacuous


def test_zero_alpha_costs_nothing(model):
    _, lm = model
    steered = score_steering_cost(lm, TEXTS, vectors=_vectors(lm), alphas=(0.0,), site=SITE)
    unsteered = score_steering_cost(lm, TEXTS)
    np.testing.assert_allclose(_values(steered, metric="kl_next_token"), 0.0, atol=1e-6)
    np.testing.assert_allclose(_values(unsteered, metric="kl_next_token"), 0.0, atol=1e-6)
    expected = _values(unsteered, metric="perplexity")
    for name in ("a", "b"):
        np.testing.assert_allclose(_values(steered, vector=name, metric="perplexity"), expected, rtol=1e-5)
    assert np.ptp(expected) > 0  # texts differ, so a broadcast bug would show


def test_padded_batch_equals_unpadded_rows(model):
    _, lm = model
    vectors = _vectors(lm)
    together = score_steering_cost(lm, TEXTS, vectors=vectors, alphas=ALPHAS, site=SITE, batch_size=len(TEXTS))
    for index, text in enumerate(TEXTS):
        alone = score_steering_cost(lm, [text], vectors=vectors, alphas=ALPHAS, site=SITE)
        for metric in ("kl_next_token", "nll"):
            for name in vectors:
                for alpha in ALPHAS:
                    (row,) = together.select(item=index, metric=metric, vector=name, alpha=alpha).records
                    (single,) = alone.select(item=0, metric=metric, vector=name, alpha=alpha).records
                    assert row.value == pytest.approx(single.value, abs=1e-5, rel=1e-5)


def test_rejects_no_texts(model):
    _, lm = model
    with pytest.raises(ValueError, match="texts is empty"):
        score_steering_cost(lm, [])
