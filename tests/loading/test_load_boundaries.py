"""Inputs that used to load silently wrong or fail deep inside a library: each now names the problem and fix."""

from __future__ import annotations

import json
import shutil

import hf_models
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lrt_jax.config import UnsupportedModelError
from lrt_jax.loading import CheckpointError, load, save
from lrt_jax.loading.safetensors_io import check_finite_tensor

import torch  # noqa: F401  (the oracle is required, never skipped)


@pytest.fixture
def llama_copy(tiny_hf_checkpoint, tmp_path):
    directory = tmp_path / "llama"
    shutil.copytree(tiny_hf_checkpoint("llama"), directory)
    return directory


def edit_config(directory, **fields):
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **fields}))


@pytest.mark.parametrize("dtype", [jnp.int32, "int8", bool])
def test_integer_parameter_dtypes_are_refused(llama_copy, dtype):
    with pytest.raises(ValueError, match="non-floating type"):
        load(llama_copy, dtype=dtype)


def test_a_dtype_that_is_no_dtype_is_named(llama_copy):
    with pytest.raises(ValueError, match="dtype='floaty' is not a dtype"):
        load(llama_copy, dtype="floaty")


def test_load_of_none_says_what_it_takes():
    with pytest.raises(TypeError, match="checkpoint directory .* got None"):
        load(None)


def test_a_weight_map_that_is_not_a_mapping_is_named(llama_copy):
    tensors = load_file(llama_copy / "model.safetensors")
    (llama_copy / "model.safetensors").unlink()
    save_file(tensors, llama_copy / "shard-1.safetensors", metadata={"format": "pt"})
    (llama_copy / "model.safetensors.index.json").write_text(json.dumps({"weight_map": 5}))
    with pytest.raises(CheckpointError, match="'weight_map' must map tensor names to shard file names; got int 5"):
        load(llama_copy)


@pytest.mark.parametrize("fields, words", [
    ({"hidden_size": 30}, "transformers rejects this llama config"),
    ({"dtype": "float8"}, r"config field dtype='float8' is not a weight dtype"),
    ({"torch_dtype": "int4"}, r"config field torch_dtype='int4'"),
])
def test_configs_transformers_or_we_reject_raise_unsupported_model_error(llama_copy, fields, words):
    edit_config(llama_copy, **fields)
    with pytest.raises(UnsupportedModelError, match=words):
        load(llama_copy)


@pytest.mark.parametrize("window", [0, -4])
def test_a_non_positive_mistral_sliding_window_is_refused(tiny_hf_checkpoint, tmp_path, window):
    directory = tmp_path / "mistral"
    shutil.copytree(tiny_hf_checkpoint("mistral"), directory)
    edit_config(directory, sliding_window=window)
    with pytest.raises(UnsupportedModelError, match=rf"sliding_window={window} is not supported: a sliding window is a positive"):
        load(directory)


def test_a_corrupt_tokenizer_json_names_the_file(llama_copy):
    hf_models.save_tiny_tokenizer(llama_copy)
    assert load(llama_copy).tokenizer is not None
    (llama_copy / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: not valid JSON"):
        load(llama_copy)


def test_random_bytes_inside_tensor_data_are_caught(llama_copy):
    path = llama_copy / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    rng = np.random.default_rng(0)
    start = header + (len(data) - header) // 2
    data[start:start + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor '.*' holds NaN or Inf"):
        load(llama_copy)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_finite_check_finds_every_non_finite_value_in_every_storage_dtype(dtype, bad):
    values = np.linspace(-3, 3, 9_000_011).astype(dtype)  # more than two check blocks
    check_finite_tensor(values, "w", "f.safetensors")
    values[8_999_000] = bad
    with pytest.raises(CheckpointError, match="first at flat index 8999000"):
        check_finite_tensor(values, "w", "f.safetensors")


def test_save_into_an_existing_checkpoint_refuses_then_replaces_it_whole(llama_copy, tmp_path):
    hf_models.save_tiny_tokenizer(llama_copy, vocab_size=50)
    lm = load(llama_copy)
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "tokenizer.json").write_text("{}")  # another model's tokenizer
    (target / "vocab.json").write_text("{}")
    with pytest.raises(FileExistsError, match="exists and is not empty; pass overwrite=True"):
        save(lm, target)
    assert sorted(p.name for p in target.iterdir()) == ["tokenizer.json", "vocab.json"]
    save(lm, target, overwrite=True)
    reloaded = load(target)
    assert len(reloaded.tokenizer) == len(lm.tokenizer) == 50
    assert not (target / "vocab.json").exists()  # nothing of the replaced checkpoint is left
    np.testing.assert_array_equal(np.asarray(reloaded.params["embed"]["embedding"]),
                                  np.asarray(lm.params["embed"]["embedding"]))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left
