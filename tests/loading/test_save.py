"""save(): an LM written as an HF checkpoint loads in transformers (PyTorch) and in load() unchanged."""

from __future__ import annotations

import json

import hf_models
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrt_jax.loading import load, save

import torch
import transformers


def hf_logits(directory, tokens: np.ndarray) -> np.ndarray:
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.numpy()


@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_hf_to_lrt_to_hf_round_trip_keeps_logits_and_params(family, tiny_hf_checkpoint, tmp_path):
    original = tiny_hf_checkpoint(family)
    lm = load(original)
    save(lm, tmp_path)

    tokens = np.random.default_rng(1).integers(0, hf_models.VOCAB_SIZE, (2, 7))
    np.testing.assert_array_equal(hf_logits(tmp_path, tokens), hf_logits(original, tokens))
    reloaded = load(tmp_path)
    assert reloaded.config == lm.config
    for a, b in zip(jax.tree.leaves(lm.params), jax.tree.leaves(reloaded.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_save_writes_architecture_dtype_and_tokenizer(tmp_path):
    source = hf_models.save_tiny_hf_model("gpt_neox", tmp_path / "source", with_tokenizer=True)
    lm = load(source, dtype=jnp.bfloat16)
    save(lm, tmp_path / "copy")
    config = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert config["architectures"] == ["GPTNeoXForCausalLM"] and config["dtype"] == "bfloat16"
    assert load(tmp_path / "copy").tokenizer("w1 w2")["input_ids"] == lm.tokenizer("w1 w2")["input_ids"]
