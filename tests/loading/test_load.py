"""load(): single and sharded files, dtypes, tokenizers, and the alternative tensor layouts we accept."""

from __future__ import annotations

import json

import hf_models
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lrt_jax.lm import LM
from lrt_jax.loading import load

import torch


def assert_same_params(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_load_returns_an_lm_named_after_its_path(tiny_hf_checkpoint):
    directory = tiny_hf_checkpoint("llama")
    lm = load(directory)
    assert isinstance(lm, LM) and lm.name == str(directory) and lm.tokenizer is None
    assert lm.params["layers_0"]["attn"]["q_proj"]["kernel"].shape == (64, 64)
    assert lm.params["layers_0"]["attn"]["q_proj"]["kernel"].dtype == jnp.float32


def test_a_sharded_checkpoint_loads_to_identical_params(tiny_hf_checkpoint, tmp_path):
    single = tiny_hf_checkpoint("qwen2_moe")
    sharded = hf_models.save_tiny_hf_model("qwen2_moe", tmp_path, max_shard_size="40KB")
    assert (sharded / "model.safetensors.index.json").exists()
    assert len(set(json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"].values())) > 2
    assert_same_params(load(single).params, load(sharded).params)


def test_params_are_cast_to_the_requested_dtype(tiny_hf_checkpoint):
    lm32, lm16 = load(tiny_hf_checkpoint("gemma2")), load(tiny_hf_checkpoint("gemma2"), dtype=jnp.bfloat16)
    assert {leaf.dtype for leaf in jax.tree.leaves(lm16.params)} == {jnp.dtype(jnp.bfloat16)}
    assert_same_params(jax.tree.map(lambda p: p.astype(jnp.bfloat16), lm32.params), lm16.params)


def test_a_bfloat16_checkpoint_loads(tmp_path):
    model = hf_models.build_tiny_hf_model("llama").to(torch.bfloat16)
    model.save_pretrained(str(tmp_path))
    lm = load(tmp_path)
    expected = model.model.layers[0].self_attn.q_proj.weight.detach().float().numpy().T
    np.testing.assert_array_equal(np.asarray(lm.params["layers_0"]["attn"]["q_proj"]["kernel"]), expected)


def test_the_tokenizer_loads_when_the_directory_has_one(tmp_path):
    directory = hf_models.save_tiny_hf_model("gpt2", tmp_path, with_tokenizer=True)
    tokenizer = load(directory).tokenizer
    assert tokenizer is not None and tokenizer("w3 w7")["input_ids"] == [5, 9]


@pytest.mark.parametrize("family", ["mixtral", "olmoe", "qwen2_moe"])
def test_fused_expert_layout_loads_like_the_per_expert_layout(family, tiny_hf_checkpoint, tmp_path):
    """transformers 5 keeps experts fused in memory (``mlp.experts.gate_up_proj``); its state_dict must load too."""
    per_expert = tiny_hf_checkpoint(family)
    hf_model = hf_models.build_tiny_hf_model(family)
    state = {name: t.contiguous().numpy() for name, t in hf_model.state_dict().items()}
    assert any(name.endswith("mlp.experts.gate_up_proj") for name in state)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((per_expert / "config.json").read_text())
    assert_same_params(load(per_expert).params, load(tmp_path).params)


def test_legacy_gpt2_names_and_buffers_are_accepted(tiny_hf_checkpoint, tmp_path):
    """The original GPT-2 files have no ``transformer.`` prefix and carry causal-mask buffers."""
    directory = tiny_hf_checkpoint("gpt2")
    tensors = {name.removeprefix("transformer."): a for name, a in load_file(directory / "model.safetensors").items()}
    tensors["h.0.attn.bias"] = np.ones((1, 1, 64, 64), np.float32)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    assert_same_params(load(directory).params, load(tmp_path).params)


def test_tied_checkpoints_may_also_store_the_output_head(tiny_hf_checkpoint, tmp_path):
    directory = tiny_hf_checkpoint("gemma")
    tensors = load_file(directory / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    lm = load(tmp_path)
    assert "lm_head" not in lm.params
    assert_same_params(load(directory).params, lm.params)
