"""Bad checkpoints fail with CheckpointError / UnsupportedModelError naming file, tensor and remedy."""

from __future__ import annotations

import json
import shutil

import hf_models
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lrt_jax.config import UnsupportedModelError
from lrt_jax.loading import CheckpointError, load

import torch  # noqa: F401  (the oracle is required, never skipped)


@pytest.fixture
def llama_copy(tiny_hf_checkpoint, tmp_path):
    """A private copy of the tiny llama checkpoint that a test may damage."""
    directory = tmp_path / "llama"
    shutil.copytree(tiny_hf_checkpoint("llama"), directory)
    return directory


def edit_tensors(directory, edit):
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.*not a directory"):
        load(tmp_path / "nowhere")


def test_a_missing_config_json_is_named(llama_copy):
    (llama_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: not found"):
        load(llama_copy)


def test_missing_weights_are_named(llama_copy):
    (llama_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors nor model.safetensors.index.json"):
        load(llama_copy)


def test_an_unknown_model_type_is_refused(llama_copy):
    config = json.loads((llama_copy / "config.json").read_text())
    (llama_copy / "config.json").write_text(json.dumps({**config, "model_type": "falcon"}))
    with pytest.raises(UnsupportedModelError, match="'falcon'"):
        load(llama_copy)


def test_a_missing_tensor_is_named(llama_copy):
    edit_tensors(llama_copy, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing tensors \['model\.layers\.1\.mlp\.up_proj\.weight'\]"):
        load(llama_copy)


def test_an_unexpected_tensor_is_named(llama_copy):
    edit_tensors(llama_copy, lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": np.zeros(64, np.float32)}))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unexpected tensor 'model\.layers\.0\.self_attn\.q_proj\.bias'"):
        load(llama_copy)


def test_an_unknown_tensor_name_is_named(llama_copy):
    edit_tensors(llama_copy, lambda t: t.update({"model.vision_tower.weight": np.zeros(3, np.float32)}))
    with pytest.raises(CheckpointError, match="unexpected tensor 'model.vision_tower.weight'"):
        load(llama_copy)


def test_a_tensor_of_the_wrong_shape_is_named(llama_copy):
    edit_tensors(llama_copy, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((64, 64), np.float32)}))
    with pytest.raises(CheckpointError, match=r"tensor 'model\.layers\.0\.self_attn\.k_proj\.weight' has shape \(64, 64\)"):
        load(llama_copy)


def test_a_missing_expert_is_named(tiny_hf_checkpoint, tmp_path):
    directory = tmp_path / "mixtral"
    shutil.copytree(tiny_hf_checkpoint("mixtral"), directory)
    edit_tensors(directory, lambda t: t.pop("model.layers.1.block_sparse_moe.experts.2.w3.weight"))
    with pytest.raises(CheckpointError, match=r"experts\.\*\.w3\.weight needs experts 0\.\.3; missing \[2\]"):
        load(directory)


def test_a_truncated_file_is_named(llama_copy):
    path = llama_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="model.safetensors: truncated or corrupt"):
        load(llama_copy)


def test_a_corrupt_header_is_named(llama_copy):
    path = llama_copy / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:40] = b"#" * 32
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: truncated or corrupt"):
        load(llama_copy)


def test_a_missing_shard_is_named(tmp_path):
    directory = hf_models.save_tiny_hf_model("llama", tmp_path, max_shard_size="40KB")
    shard = sorted(directory.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"{shard.name}: shard listed in model.safetensors.index.json is missing"):
        load(directory)


def test_a_tensor_missing_from_its_listed_shard_is_named(tmp_path):
    directory = hf_models.save_tiny_hf_model("llama", tmp_path, max_shard_size="40KB")
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.layers.0.mlp.up_proj.weight"] = index["weight_map"]["model.norm.weight"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="cannot read tensor 'model.layers.0.mlp.up_proj.weight'"):
        load(directory)
