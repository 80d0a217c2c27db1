"""Test session set-up shared by every test module.

Eight fake CPU devices, so multi-device code (meshes, sharded parameters, statistics
summed across the data axis) is tested in the default run; this must happen before
JAX is imported anywhere, hence at the very top. Helpers that build HF models live in
``tests/hf_models.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

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
