"""Explicit broadcasting and promotion, so the code runs with ``jax_numpy_rank_promotion="raise"``
and ``jax_numpy_dtype_promotion="strict"``.

NumPy silently lifts a ``[d]`` array to ``[1, 1, d]`` when it meets a ``[b, t, d]``
one; JAX can refuse that (the test suite does, as equinox's does) because the same
rule also hides shape bugs. Code that means "one value per feature" says so with
:func:`lift`.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["lift", "widest_float"]


def widest_float(*arrays) -> jnp.dtype:
    """The widest float dtype among ``arrays`` (bfloat16/float16 meet float32 as float32)."""
    dtypes = [jnp.dtype(a.dtype) for a in arrays]
    return max(dtypes, key=lambda d: (d.itemsize, d == jnp.float16))


def lift(value, like):
    """``value`` with leading axes of size 1 added until it has the rank of ``like``."""
    missing = jnp.ndim(like) - jnp.ndim(value)
    return jnp.reshape(value, (1,) * missing + jnp.shape(value)) if missing > 0 else value
