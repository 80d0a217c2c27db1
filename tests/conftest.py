"""Shared pytest fixtures. Helpers that build HF models live in ``tests/hf_models.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # makes ``import hf_models`` work from any test directory

import hf_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_hf_checkpoint(tmp_path_factory):
    """``tiny_hf_checkpoint(family, **overrides) -> Path``: a saved tiny HF model, cached per session."""
    cache = {}

    def make(family: str, **overrides) -> Path:
        key = (family, repr(sorted(overrides.items())))
        if key not in cache:
            directory = tmp_path_factory.mktemp(f"hf_{family}")
            cache[key] = hf_models.save_tiny_hf_model(family, directory, **overrides)
        return cache[key]

    return make
