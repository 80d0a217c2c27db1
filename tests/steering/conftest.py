"""Strict promotion for the steering tests, so silent broadcasting or dtype mixing fails loudly."""

import jax
import pytest


@pytest.fixture(autouse=True)
def strict_promotion():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield
