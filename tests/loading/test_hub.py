"""``load("org/name", revision=...)``: hub ids go through snapshot_download; offline and unreachable hubs fail clearly.

No test here touches the network: the download is monkeypatched, and the offline and
unreachable cases point huggingface_hub at an empty cache and a closed local port.
"""

import time

import huggingface_hub
import jax
import numpy as np
import pytest
from huggingface_hub import constants

import lrt_jax
from lrt_jax.loading import CheckpointError, hub


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty HF cache, so no real snapshot on this machine can answer."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hub_id_is_downloaded_with_repo_revision_and_patterns(tiny_hf_checkpoint, monkeypatch):
    directory = tiny_hf_checkpoint("llama")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(directory)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    lm = lrt_jax.load("org/tiny", revision="abc")

    assert len(calls) == 1
    repo_id, kwargs = calls[0]
    assert repo_id == "org/tiny" and kwargs["revision"] == "abc"
    patterns = kwargs["allow_patterns"]
    for needed in ("config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer.json",
                   "tokenizer_config.json", "generation_config.json"):
        assert needed in patterns
    reference = lrt_jax.load(directory)
    assert lm.config == reference.config and lm.name == "org/tiny"
    assert jax.tree.structure(lm.params) == jax.tree.structure(reference.params)
    for got, want in zip(jax.tree.leaves(lm.params), jax.tree.leaves(reference.params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("name, expected", [
    ("gpt2", True), ("org/name", True), ("EleutherAI/pythia-70m", True), ("Qwen/Qwen2.5-0.5B", True),
    ("./model", False), ("/abs/model", False), ("~/model", False), ("a/b/c", False), ("a\\b", False),
    ("org/../x", False), ("", False),
])
def test_what_reads_as_a_hub_id(name, expected):
    assert hub.looks_like_hub_id(name) is expected


def test_a_missing_path_is_still_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("must not download"))
    for path in (tmp_path / "nowhere", "./nowhere", "a/b/c"):
        with pytest.raises(CheckpointError, match="not a directory"):
            lrt_jax.load(path)


def test_revision_with_a_local_directory_is_refused(tiny_hf_checkpoint):
    with pytest.raises(CheckpointError, match="revision= applies only to hub ids"):
        lrt_jax.load(tiny_hf_checkpoint("llama"), revision="abc")


def test_offline_without_a_cached_snapshot_says_so(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import; the env alone is too late

    with pytest.raises(CheckpointError) as caught:
        lrt_jax.load("org/tiny", revision="abc")

    message = str(caught.value)
    assert "treated as a hub id" in message and "needs network or a local snapshot" in message
    assert "HF_HUB_OFFLINE" in message and "local directory" in message and "'abc'" in message


def test_bare_name_like_gpt2_is_a_hub_id_in_the_message(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="gpt2: not a local directory, so treated as a hub id"):
        lrt_jax.load("gpt2")


def test_unreachable_hub_fails_fast_and_says_so(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # closed port: refused at once
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    start = time.monotonic()

    with pytest.raises(CheckpointError) as caught:
        lrt_jax.load("org/tiny")

    assert time.monotonic() - start < 30
    message = str(caught.value)
    assert "could not be reached" in message and "HF_HUB_OFFLINE" in message and "local directory" in message
