"""Shared fixtures: float64/float32 precision modes and synthetic paired data.

``precision`` runs a test twice: under ``jax.enable_x64(True)`` with the
issue's float64 tolerance (1e-6 relative) and in float32 (1e-3). The x64 flag
is scoped to the test, so it never leaks into other test modules.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import pytest


class Precision(NamedTuple):
    dtype: str
    rtol: float


@pytest.fixture(params=[Precision("float64", 1e-6), Precision("float32", 1e-3)],
                ids=["float64", "float32"])
def precision(request):
    with jax.enable_x64(request.param.dtype == "float64"):
        yield request.param


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def relative_error(actual, expected) -> float:
    """``‖actual − expected‖ / ‖expected‖`` in float64."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def paired_data(n=400, d_s=12, d_t=7, *, seed=0, noise=0.5, offset=3.0):
    """Correlated ``x [n, d_s]`` with a non-zero mean and ``y = x W + b + noise``."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d_s, d_s)) / np.sqrt(d_s) + np.eye(d_s)
    x = rng.standard_normal((n, d_s)) @ mixing + offset * rng.standard_normal(d_s)
    weight = rng.standard_normal((d_s, d_t))
    y = x @ weight + offset * rng.standard_normal(d_t) + noise * rng.standard_normal((n, d_t))
    return x, y


def as_dtype(precision, *arrays):
    return tuple(np.asarray(a, precision.dtype) for a in arrays)
