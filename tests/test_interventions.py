"""Interventions in a forward pass, against HF PyTorch forward hooks and hand computations.

References: ``Add`` at ``layers.{i}.resid_post`` is HF with a forward hook on decoder
layer ``i`` that adds the vector to its output; ``Ablate``, ``Mix``, ``Replace``,
``Scale`` and the position rules are NumPy computations on activations captured
*without* the intervention. Tiny random HF checkpoints come from ``tests/hf_models.py``.
"""

from __future__ import annotations


import numpy as np
import pytest
from hf_steering_hooks import adding_to_layer_output

import lrt_jax
from lrt_jax.interventions import Ablate, Add, Mix, Replace, Scale

import torch

TOLERANCE = 1e-4
SITE = "layers.1.resid_post"




@pytest.fixture
def models(hf_and_lrt_models):
    """``models(family) -> (hf_model, lm)`` for a tiny random checkpoint."""
    return hf_and_lrt_models


def left_padded_batch(seq: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """``[3, seq]`` tokens and mask; rows 1 and 2 are left-padded by 2 and 5."""
    tokens = np.random.default_rng(1).integers(2, 150, (3, seq)).astype(np.int32)
    mask = np.ones((3, seq), bool)
    mask[1, :2] = mask[2, :5] = False
    return np.where(mask, tokens, 0), mask


def random_vector(width: int, seed: int = 0, *shape) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*shape, width)).astype(np.float32)


def hf_logits_with_added_vector(hf_model, tokens, mask, layer: int, vector, where):
    """HF logits with ``vector`` added to decoder layer ``layer``'s output at positions ``where [batch, seq]``."""
    delta = torch.tensor(np.asarray(vector)) * torch.tensor(where, dtype=torch.float32)[..., None]
    with adding_to_layer_output(hf_model, layer, delta), torch.no_grad():
        return hf_model(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            position_ids=torch.tensor(np.maximum(np.cumsum(mask, axis=-1) - 1, 0)),
        ).logits.numpy()


@pytest.mark.parametrize(
    "family, positions",
    [("llama", "all"), ("gemma2", "all"), ("gpt_neox", "all"), ("mixtral", "all"), ("gemma2", "last")],
)
def test_add_matches_hf_forward_hook(models, family, positions):
    hf_model, lm = models(family)
    tokens, mask = left_padded_batch()
    vector = random_vector(lm.config.d_model)
    where = mask if positions == "all" else np.eye(tokens.shape[1], dtype=bool)[[-1, -1, -1]]
    expected = hf_logits_with_added_vector(hf_model, tokens, mask, 1, 3.0 * vector, where)
    ours = lrt_jax.forward(lm, tokens, attention_mask=mask, interventions=Add(SITE, vector, 3.0, positions=positions))
    baseline = lrt_jax.forward(lm, tokens, attention_mask=mask)
    assert np.abs(np.asarray(ours) - np.asarray(baseline))[mask].max() > 100 * TOLERANCE  # the edit matters
    np.testing.assert_allclose(np.asarray(ours)[mask], expected[mask], atol=TOLERANCE, rtol=0)


def captured_with_and_without(lm, tokens, mask, intervention, site=SITE):
    clean = np.asarray(lrt_jax.capture(lm, tokens, site, attention_mask=mask)[site])
    edited = lrt_jax.capture(lm, tokens, site, attention_mask=mask, interventions=intervention)[site]
    return clean, np.asarray(edited)


def test_ablate_mix_replace_scale_match_hand_computations(models):
    _, lm = models("llama")
    tokens, mask = left_padded_batch()
    direction = random_vector(lm.config.d_model, 1)
    values = random_vector(lm.config.d_model, 2, *tokens.shape)
    unit = direction / np.linalg.norm(direction)

    clean, ablated = captured_with_and_without(lm, tokens, mask, Ablate(SITE, direction))
    hand = clean - (clean @ unit)[..., None] * unit
    np.testing.assert_allclose(ablated[mask], hand[mask], atol=1e-5)
    assert np.abs(ablated[mask] @ unit).max() < 1e-4

    _, mixed = captured_with_and_without(lm, tokens, mask, Mix(SITE, values, 0.3))
    np.testing.assert_allclose(mixed[mask], (0.7 * clean + 0.3 * values)[mask], atol=1e-5)
    _, replaced = captured_with_and_without(lm, tokens, mask, Replace(SITE, values))
    np.testing.assert_allclose(replaced[mask], values[mask], atol=0)
    _, scaled = captured_with_and_without(lm, tokens, mask, Scale(SITE, -2.0))
    np.testing.assert_allclose(scaled[mask], -2.0 * clean[mask], atol=1e-5)


def test_edit_at_a_site_changes_what_later_layers_compute(models):
    """Replacing the last layer's residual with another batch's makes the logits that batch's logits."""
    _, lm = models("llama")
    tokens, mask = left_padded_batch()
    other_tokens = np.where(mask, (tokens + 7) % 150 + 2, 0).astype(np.int32)
    last = f"layers.{lm.config.n_layers - 1}.resid_post"
    other_residual = lrt_jax.capture(lm, other_tokens, last, attention_mask=mask)[last]
    patched = lrt_jax.forward(lm, tokens, attention_mask=mask, interventions=Replace(last, other_residual))
    expected = lrt_jax.forward(lm, other_tokens, attention_mask=mask)
    np.testing.assert_allclose(np.asarray(patched)[mask], np.asarray(expected)[mask], atol=1e-5)


def test_position_rules_and_vector_shapes(models):
    _, lm = models("llama")
    tokens, mask = left_padded_batch()
    batch, seq, width = *tokens.shape, lm.config.d_model
    explicit = np.zeros(seq, bool)
    explicit[[3, 6]] = True
    last = np.zeros((batch, seq), bool)
    last[:, -1] = True
    cases = [
        (Add(SITE, random_vector(width, 3), 2.0, positions="prompt"), 2.0 * random_vector(width, 3), mask),
        (Add(SITE, random_vector(width, 4, seq), 1.0, positions="last"), random_vector(width, 4, seq), last),
        (Add(SITE, random_vector(width, 5, batch, seq), 1.0, positions=explicit),
         random_vector(width, 5, batch, seq), explicit[None] & mask),
    ]
    for intervention, added, touched in cases:
        clean, edited = captured_with_and_without(lm, tokens, mask, intervention)
        expected = clean + np.where(touched[..., None], added, 0.0)
        np.testing.assert_allclose(edited[mask], expected[mask], atol=1e-5)


def test_add_normalisations(models):
    _, lm = models("llama")
    tokens, mask = left_padded_batch()
    vector = random_vector(lm.config.d_model, 6)
    clean, unit_added = captured_with_and_without(lm, tokens, mask, Add(SITE, vector, 2.5, normalize="unit"))
    np.testing.assert_allclose(np.linalg.norm(unit_added - clean, axis=-1)[mask], 2.5, rtol=1e-4)

    _, residual_added = captured_with_and_without(lm, tokens, mask, Add(SITE, vector, 0.5, normalize="residual"))
    row_mean_norm = np.array([np.linalg.norm(clean[row][mask[row]], axis=-1).mean() for row in range(3)])
    expected = clean + 0.5 * row_mean_norm[:, None, None] * vector / np.linalg.norm(vector)
    np.testing.assert_allclose(residual_added[mask], expected[mask], atol=1e-4)


def test_interventions_apply_in_order_then_capture_reads(models):
    _, lm = models("llama")
    tokens, mask = left_padded_batch()
    vector = random_vector(lm.config.d_model, 7)
    clean, edited = captured_with_and_without(lm, tokens, mask, [Add(SITE, vector, 1.0), Scale(SITE, 2.0)])
    np.testing.assert_allclose(edited[mask], (2.0 * (clean + vector))[mask], atol=1e-5)


def test_bad_interventions_raise_clear_errors(models):
    _, lm = models("llama")
    tokens, mask = left_padded_batch()
    width = lm.config.d_model

    def run(intervention):
        return lrt_jax.forward(lm, tokens, attention_mask=mask, interventions=intervention)

    with pytest.raises(ValueError, match=rf"width {width + 1}.*{SITE}.*width {width}"):
        run(Add(SITE, np.ones(width + 1, np.float32)))
    with pytest.raises(ValueError, match=r"positions mask .* shape \(4,\).*\(9,\)"):
        run(Add(SITE, np.ones(width, np.float32), positions=np.ones(4, bool)))
    with pytest.raises(ValueError, match="Unknown position rule 'first'"):
        run(Add(SITE, np.ones(width, np.float32), positions="first"))
    with pytest.raises(ValueError, match="NaN"):
        run(Add(SITE, np.full(width, np.nan, np.float32)))
    with pytest.raises(ValueError, match="generated"):
        run(Add(SITE, np.ones(width, np.float32), positions="generated"))
    with pytest.raises(ValueError, match=r"shape \(4, 64\)"):
        run(Replace(SITE, np.ones((4, width), np.float32)))
    with pytest.raises(ValueError, match="scalar"):
        run(Add(SITE, np.ones(width, np.float32), np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="zero norm"):
        run(Ablate(SITE, np.zeros(width, np.float32)))
    with pytest.raises(lrt_jax.UnknownSiteError, match="layers.9"):
        run(Add("layers.9.resid_post", np.ones(width, np.float32)))
