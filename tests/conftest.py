"""Test session set-up shared by every test module.

Eight fake CPU devices, so multi-device code (meshes, sharded parameters, statistics
summed across the data axis) is tested in the default run; this must happen before
JAX is imported anywhere, hence at the very top. Helpers that build HF models live in
``tests/hf_models.py``.
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import functools
import importlib.util
import sys
from pathlib import Path

import jax

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


@functools.cache
def _hf_and_lrt_models(directory: str):
    import torch
    import transformers

    from lrt_jax import load

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return hf_model, load(directory)


@pytest.fixture(scope="session")
def hf_and_lrt_models(tiny_hf_checkpoint):
    """``hf_and_lrt_models(family, **overrides) -> (hf_model, lm)``: one tiny checkpoint in both frameworks."""
    return lambda family, **overrides: _hf_and_lrt_models(str(tiny_hf_checkpoint(family, **overrides)))


@pytest.fixture(autouse=True)
def strict_promotion():
    """Strict dtype and rank promotion for every test, as equinox's suite runs.

    An implicit float32 → float64 upcast or a silent ``[d]`` → ``[1, 1, d]`` lift in library
    code raises here; the code says what it means instead (:func:`lrt_jax._broadcast.lift`).
    """
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(scope="session")
def experiment_script():
    """``experiment_script(name)``: the module ``experiments/<name>.py``, imported from its path."""
    directory = Path(__file__).resolve().parents[1] / "experiments"

    @functools.cache
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(autouse=True)
def no_leaked_compilation_cache():
    """A test that turns on the persistent XLA cache (``lrt-jax demo`` does) turns it off again.

    Otherwise every later test in the process writes executables into that test's
    temporary directory; with libtpu loaded by the planner tests, such a write was seen
    to crash the interpreter.
    """
    before = jax.config.jax_compilation_cache_dir
    yield
    if jax.config.jax_compilation_cache_dir != before:
        from jax._src import compilation_cache

        jax.config.update("jax_compilation_cache_dir", before)
        compilation_cache.reset_cache()


# Tests that compile for a deviceless TPU load libtpu into the process; they run last, as the
# planner's tests always did, so the CPU-only tests run in a process without it.
TPU_TOPOLOGY_TESTS = ("test_splash_compiles_for_a_deviceless_v5e", "test_auto_is_dense_on_cpu_and_sparse_on_a_tpu",
                      "test_v5e_topology_compiles", "test_sparse_moe_on_v5e")


def pytest_collection_modifyitems(config, items):
    late = [item for item in items if item.name.startswith(TPU_TOPOLOGY_TESTS)]
    items[:] = [item for item in items if item not in late] + late


MAX_MAPPINGS_BEFORE_RELEASE = 30000  # of the kernel's vm.max_map_count, 65530 by default


def _mappings() -> int:
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to watch
        return 0


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
    """Drop the compiled executables once the process holds many memory mappings.

    Every XLA CPU executable holds memory mappings and JAX keeps them alive in its
    caches; over the whole suite one process passed the kernel's ``vm.max_map_count``
    (65530) and crashed inside the CPU compiler. Clearing only past a threshold keeps
    the programs that later modules reuse in the common case.
    """
    yield
    if _mappings() > MAX_MAPPINGS_BEFORE_RELEASE:
        jax.clear_caches()
        gc.collect()
