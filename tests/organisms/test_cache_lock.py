"""The organism cache lock: concurrent requests train an organism once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import time

import pytest

from lrt_jax.organisms import cache
from lrt_jax.organisms.recipes import get_recipe


class _Loaded:
    """Stands in for a loaded LM: records the ``_replace(name=...)`` call."""

    def __init__(self, path, calls):
        self.path, self.calls = path, calls

    def _replace(self, **fields):
        self.calls.append((self.path, fields))
        return self


@pytest.fixture
def recorded(monkeypatch):
    """Replaces training and loading by recorders (no model is built)."""
    calls = {"train": [], "load": []}

    def train(recipe, path, progress):
        calls["train"].append(path)
        path.mkdir()
        return "trained"

    monkeypatch.setattr(cache, "train_organism", train)
    monkeypatch.setattr(cache.loading, "load", lambda path: _Loaded(path, calls["load"]))
    return calls


def test_a_process_waits_for_the_one_training_and_reuses_its_organism(tmp_path, recorded):
    recipe = get_recipe("small")
    path = cache.organism_path(recipe, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = textwrap.dedent(f"""
        import fcntl, os, time
        with open({str(path) + '.lock'!r}, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            print("locked", flush=True)
            time.sleep(1.5)
            os.mkdir({str(path)!r})         # the other process's training finished
    """)
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        start = time.monotonic()
        result = cache.organism(recipe, cache_dir=tmp_path, progress=False)
        waited = time.monotonic() - start
    finally:
        other.wait(timeout=30)
    assert waited >= 1.0, f"did not wait for the lock holder ({waited:.2f} s)"
    assert recorded["train"] == []                       # not trained a second time
    assert recorded["load"] == [(path, {"name": "small"})]
    assert isinstance(result, _Loaded)


def test_a_miss_trains_once_then_hits_and_a_failed_run_releases_the_lock(tmp_path, recorded,
                                                                         monkeypatch):
    recipe = get_recipe("small")
    path = cache.organism_path(recipe, tmp_path)
    assert cache.organism(recipe, cache_dir=tmp_path, progress=False) == "trained"
    assert recorded["train"] == [path] and path.is_dir()
    cache.organism(recipe, cache_dir=tmp_path, progress=False)
    assert recorded["train"] == [path] and len(recorded["load"]) == 1

    other = dataclasses.replace(recipe, name="small-interrupted")
    monkeypatch.setattr(cache, "train_organism",
                        lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        cache.organism(other, cache_dir=tmp_path, progress=False)
    assert not cache.organism_path(other, tmp_path).exists()
    probe = textwrap.dedent(f"""
        import fcntl
        with open({str(cache.organism_path(other, tmp_path)) + '.lock'!r}, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises if still held
        print("free")
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "free", out.stderr


def test_staging_left_by_a_killed_run_is_removed_by_the_next_training(tmp_path, recorded):
    recipe = get_recipe("small")
    path = cache.organism_path(recipe, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = [path.with_name(f".{path.name}.abc123"), path.with_name(f".{path.name}.saving-xyz")]
    for folder in stale:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    unrelated = path.with_name(".other-organism.abc")
    unrelated.mkdir()
    assert cache.organism(recipe, cache_dir=tmp_path, progress=False) == "trained"
    assert not any(folder.exists() for folder in stale)
    assert unrelated.exists()  # another organism's staging is not ours to remove


def test_a_damaged_cache_entry_is_trained_again_with_a_warning(tmp_path, recorded, monkeypatch):
    recipe = get_recipe("small")
    path = cache.organism_path(recipe, tmp_path)
    path.mkdir(parents=True)
    (path / "config.json").write_text("{")

    def damaged_then_fine(directory):
        if not recorded["train"]:
            raise cache.loading.CheckpointError(f"{directory}/config.json: not valid JSON")
        return _Loaded(directory, recorded["load"])

    monkeypatch.setattr(cache.loading, "load", damaged_then_fine)
    monkeypatch.setattr(cache, "train_organism",
                        lambda recipe, path, progress: (recorded["train"].append(path), path.mkdir(), "trained")[-1])
    with pytest.warns(UserWarning, match="is damaged .*training it again"):
        assert cache.organism(recipe, cache_dir=tmp_path, progress=False) == "trained"
    assert recorded["train"] == [path]
