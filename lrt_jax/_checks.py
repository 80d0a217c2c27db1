"""Boundary checks on arrays shared by the core and the methods built on it.

A wrong shape or a NaN fails here with a message naming the argument and the fix,
instead of surfacing later as a silently broadcast result or a NaN vector. Value
checks are skipped for tracers (under ``jit``/``vmap`` there are no values).
"""

from __future__ import annotations

import jax
import numpy as np


def check_rank(name: str, array, rank: int, layout: str) -> None:
    """Raise ``ValueError`` unless ``array`` has ``rank`` axes (``layout`` names them)."""
    if np.ndim(array) != rank:
        raise ValueError(
            f"{name} must have shape {layout}, got shape {np.shape(array)}. "
            f"Reduce or reshape it to {rank} axes before calling."
        )


def check_finite(name: str, array) -> None:
    """Raise ``ValueError`` when ``array`` holds NaN or infinity.

    Skipped under ``jit``/``vmap``: a tracer has no values to inspect.
    """
    if isinstance(array, jax.core.Tracer):
        return
    if not np.all(np.isfinite(np.asarray(array))):
        raise ValueError(
            f"{name} contains NaN or infinite values. Check the capture for "
            "overflow (e.g. float16 activations) or drop the affected items."
        )


def check_activations(name: str, array, rank: int = 2, layout: str = "[n, d_model]") -> None:
    """Rank and finiteness check for an activation array."""
    check_rank(name, array, rank, layout)
    check_finite(name, array)
