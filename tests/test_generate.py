"""KV-cached generation against HF ``generate`` and against full forward passes.

References: HF PyTorch ``generate(do_sample=False)`` (optionally with a forward hook
adding a vector to a decoder layer), and :func:`lrt_jax.forward` over the prompt plus
the generated tokens. By causality, a full pass's logits at position ``t`` are the
logits of the prefix ``0..t``, so one full pass checks every cached step at once.
Gemma-2's tiny config is untied here: with tied embeddings its random weights echo
the last prompt token forever, which would hide a wrong step.
"""

from __future__ import annotations


import numpy as np
import pytest
from hf_steering_hooks import adding_to_layer_output

import lrt_jax
from lrt_jax import generate
from lrt_jax.interventions import Add, Mix

import torch

TOLERANCE = 1e-4
PROMPT_LEN, NEW_TOKENS = 7, 10  # longer than the tiny configs' sliding window (4)
SITE = "layers.1.resid_post"
FAMILY_OVERRIDES = {"llama": {}, "gemma2": {"tie_word_embeddings": False}, "gpt_neox": {}, "mixtral": {}}




@pytest.fixture
def models(hf_and_lrt_models):
    """``models(family) -> (hf_model, lm)`` for a tiny random checkpoint."""
    return lambda family: hf_and_lrt_models(family, **FAMILY_OVERRIDES[family])


def prompts(padded: bool) -> tuple[np.ndarray, np.ndarray]:
    """``[3, PROMPT_LEN]`` tokens and mask; when padded, rows 1 and 2 are left-padded by 2 and 4."""
    tokens = np.random.default_rng(1).integers(2, 150, (3, PROMPT_LEN)).astype(np.int32)
    mask = np.ones(tokens.shape, bool)
    if padded:
        mask[1, :2] = mask[2, :4] = False
    return np.where(mask, tokens, 0), mask


def hf_greedy(hf_model, tokens, mask) -> np.ndarray:
    """HF greedy continuation ``[batch, NEW_TOKENS]``; rows that emit EOS are padded with 0 after it."""
    with torch.no_grad():
        out = hf_model.generate(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=0,
        )
    new_tokens = out[:, PROMPT_LEN:].numpy()
    # HF stops early once every row has finished; the missing columns are padding.
    return np.pad(new_tokens, ((0, 0), (0, NEW_TOKENS - new_tokens.shape[1])))


def hf_stop_tokens(hf_model) -> tuple[int, ...]:
    eos = hf_model.generation_config.eos_token_id
    return () if eos is None else tuple(np.atleast_1d(eos).tolist())


@pytest.mark.parametrize("family", list(FAMILY_OVERRIDES))
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_greedy_generate_matches_hf(models, family, padded):
    hf_model, lm = models(family)
    tokens, mask = prompts(padded)
    ours = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                    stop_tokens=hf_stop_tokens(hf_model), pad_token_id=0)
    np.testing.assert_array_equal(np.asarray(ours.tokens), hf_greedy(hf_model, tokens, mask))


@pytest.mark.parametrize("family, positions", [("llama", "all"), ("gemma2", "generated"), ("gpt_neox", "all")])
def test_generate_with_add_matches_hf_hook(models, family, positions):
    hf_model, lm = models(family)
    tokens, mask = prompts(padded=True)
    vector = 4.0 * np.random.default_rng(2).normal(size=lm.config.d_model).astype(np.float32)
    with adding_to_layer_output(hf_model, 1, torch.tensor(vector), decode_steps_only=positions == "generated"):
        expected = hf_greedy(hf_model, tokens, mask)
    steered = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                       stop_tokens=hf_stop_tokens(hf_model), pad_token_id=0,
                       interventions=Add(SITE, vector, 1.0, positions=positions))
    np.testing.assert_array_equal(np.asarray(steered.tokens), expected)
    assert (expected != hf_greedy(hf_model, tokens, mask)).any()  # the vector changes the text


def full_sequence(tokens, mask, generation):
    return (np.concatenate([tokens, np.asarray(generation.tokens)], axis=1),
            np.concatenate([mask, np.asarray(generation.generated_mask)], axis=1))


@pytest.mark.parametrize("family", list(FAMILY_OVERRIDES))
def test_every_cached_step_equals_a_full_forward_pass(models, family):
    """Logits and resid_post of every generated token, with prompt/generated/last interventions."""
    _, lm = models(family)
    tokens, mask = prompts(padded=True)
    rng = np.random.default_rng(3)
    slots, width = PROMPT_LEN + NEW_TOKENS, lm.config.d_model
    on_prompt, on_generated = rng.normal(size=(2, width)).astype(np.float32)
    mix_values = rng.normal(size=(slots, width)).astype(np.float32)
    generation = generate(
        lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS, capture_sites=("logits", SITE),
        interventions=[Add("layers.0.resid_post", on_prompt, 2.0, positions="prompt"),
                       Add(SITE, on_generated, 2.0, positions="generated"),
                       Mix("layers.0.mlp_out", mix_values, 0.5, positions="last")],
    )
    prompt_slots = np.arange(slots) < PROMPT_LEN
    same_in_forward = [Add("layers.0.resid_post", on_prompt, 2.0, positions=prompt_slots),
                       Add(SITE, on_generated, 2.0, positions=~prompt_slots),
                       Mix("layers.0.mlp_out", mix_values, 0.5, positions=np.arange(slots) == PROMPT_LEN - 1)]
    all_tokens, all_mask = full_sequence(tokens, mask, generation)
    reference = lrt_jax.capture(lm, all_tokens, ("logits", SITE), attention_mask=all_mask,
                                interventions=same_in_forward)
    generated = slice(PROMPT_LEN, None)
    for site in ("logits", SITE):
        np.testing.assert_allclose(generation.activations[site], np.asarray(reference[site])[:, generated],
                                   atol=TOLERANCE, rtol=0, err_msg=site)
    greedy_choices = np.argmax(np.asarray(reference["logits"])[:, PROMPT_LEN - 1:-1], axis=-1)
    np.testing.assert_array_equal(np.asarray(generation.tokens), greedy_choices)


def test_residual_normalised_add_uses_the_prompt_mean_norm(models):
    _, lm = models("llama")
    tokens, mask = prompts(padded=True)
    vector = np.random.default_rng(4).normal(size=lm.config.d_model).astype(np.float32)
    steered = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                       interventions=Add(SITE, vector, 0.8, positions="generated", normalize="residual"))
    clean = np.asarray(lrt_jax.capture(lm, tokens, SITE, attention_mask=mask)[SITE])
    row_norms = np.array([np.linalg.norm(clean[row][mask[row]], axis=-1).mean() for row in range(3)])
    per_row = 0.8 * row_norms[:, None, None] * np.broadcast_to(vector / np.linalg.norm(vector),
                                                               (3, PROMPT_LEN + NEW_TOKENS, lm.config.d_model))
    explicit = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                        interventions=Add(SITE, per_row.astype(np.float32), 1.0, positions="generated"))
    np.testing.assert_array_equal(np.asarray(steered.tokens), np.asarray(explicit.tokens))


def test_stop_tokens_end_rows_and_pad_the_rest(models):
    _, lm = models("llama")
    tokens, mask = prompts(padded=True)
    free = np.asarray(generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS).tokens)
    stop = int(free[0, 2])
    stopped = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS, stop_tokens=(stop,),
                       pad_token_id=1)
    for row in range(3):
        hits = np.flatnonzero(free[row] == stop)
        end = hits[0] + 1 if hits.size else NEW_TOKENS
        np.testing.assert_array_equal(stopped.tokens[row, :end], free[row, :end])
        assert (np.asarray(stopped.tokens[row, end:]) == 1).all()
        np.testing.assert_array_equal(stopped.generated_mask[row], np.arange(NEW_TOKENS) < end)


def test_sampling(models):
    _, lm = models("llama")
    tokens, mask = prompts(padded=True)
    greedy = np.asarray(generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS).tokens)
    for options in ({"top_k": 1}, {"top_p": 1e-6}):
        sampled = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS, temperature=1.0, **options)
        np.testing.assert_array_equal(np.asarray(sampled.tokens), greedy, err_msg=str(options))

    top5 = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS, temperature=2.0, top_k=5, seed=3)
    all_tokens, all_mask = full_sequence(tokens, mask, top5)
    logits = np.asarray(lrt_jax.forward(lm, all_tokens, attention_mask=all_mask))[:, PROMPT_LEN - 1:-1]
    allowed = np.argsort(logits, axis=-1)[..., -5:]
    assert (allowed == np.asarray(top5.tokens)[..., None]).any(-1).all()
    again = generate(lm, tokens, attention_mask=mask, max_new_tokens=NEW_TOKENS, temperature=2.0, top_k=5, seed=3)
    np.testing.assert_array_equal(np.asarray(again.tokens), np.asarray(top5.tokens))
    assert (np.asarray(top5.tokens) != greedy).any()


def test_bad_generation_inputs_raise_clear_errors(models):
    _, lm = models("gpt_neox")  # max_position_embeddings = 64
    tokens, mask = prompts(padded=True)
    with pytest.raises(ValueError, match=r"prompt length 7 \+ max_new_tokens 60 = 67 exceeds .* 64"):
        generate(lm, tokens, attention_mask=mask, max_new_tokens=60)
    with pytest.raises(ValueError, match="left-padded"):
        generate(lm, tokens, attention_mask=mask[:, ::-1], max_new_tokens=4)
    with pytest.raises(ValueError, match=r"shape \(7,\).*\(11,\)"):
        generate(lm, tokens, attention_mask=mask, max_new_tokens=4,
                 interventions=Add(SITE, np.ones(lm.config.d_model, np.float32), positions=np.ones(7, bool)))
    with pytest.raises(ValueError, match="NaN"):
        generate(lm, tokens, attention_mask=mask, max_new_tokens=4,
                 interventions=Add(SITE, np.full(lm.config.d_model, np.nan, np.float32)))
    with pytest.raises(ValueError, match="pad_token_id"):
        generate(lm.__class__(lm.config, lm.params), tokens, attention_mask=mask, max_new_tokens=4, stop_tokens=(3,))
    with pytest.raises(ValueError, match="top_p"):
        generate(lm, tokens, attention_mask=mask, max_new_tokens=4, temperature=1.0, top_p=0.0)
