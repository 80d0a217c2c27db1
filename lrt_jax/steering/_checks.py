"""Boundary checks shared by the steering functions.

Every public steering function validates its arrays here so that a wrong shape or
a NaN fails with a message naming the argument and the fix, instead of surfacing
later as a silently broadcast result or a NaN vector.
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


def check_nonempty(name: str, array) -> None:
    """Raise ``ValueError`` when ``array`` has no rows (a mean over it would be NaN)."""
    if np.shape(array)[0] == 0:
        raise ValueError(
            f"{name} is empty (shape {np.shape(array)}); a mean needs at least one example. "
            "Did a label filter such as acts[labels == 1] select nothing?"
        )


def check_activations(name: str, array, rank: int = 2, layout: str = "[n, d_model]") -> None:
    """Rank and finiteness check for an activation array."""
    check_rank(name, array, rank, layout)
    check_finite(name, array)


def check_same_width(name_a: str, a, name_b: str, b) -> None:
    """Raise ``ValueError`` unless the last axes (the model width) agree."""
    if np.shape(a)[-1] != np.shape(b)[-1]:
        raise ValueError(
            f"{name_a} has width {np.shape(a)[-1]} but {name_b} has width {np.shape(b)[-1]}; "
            "both must come from the same site of the same model."
        )
