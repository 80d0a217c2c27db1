"""Boundary checks shared by the steering functions.

Every public steering function validates its arrays here so that a wrong shape or
a NaN fails with a message naming the argument and the fix, instead of surfacing
later as a silently broadcast result or a NaN vector. The rank, finiteness and
activation checks are the core's (:mod:`lrt_jax._checks`), shared with
:mod:`lrt_jax.positions`.
"""

from __future__ import annotations

import numpy as np

from lrt_jax._checks import check_activations, check_finite, check_rank

__all__ = ["check_activations", "check_finite", "check_nonempty", "check_rank", "check_same_width"]


def check_nonempty(name: str, array) -> None:
    """Raise ``ValueError`` when ``array`` has no rows (a mean over it would be NaN)."""
    if np.shape(array)[0] == 0:
        raise ValueError(
            f"{name} is empty (shape {np.shape(array)}); a mean needs at least one example. "
            "Did a label filter such as acts[labels == 1] select nothing?"
        )


def check_same_width(name_a: str, a, name_b: str, b) -> None:
    """Raise ``ValueError`` unless the last axes (the model width) agree."""
    if np.shape(a)[-1] != np.shape(b)[-1]:
        raise ValueError(
            f"{name_a} has width {np.shape(a)[-1]} but {name_b} has width {np.shape(b)[-1]}; "
            "both must come from the same site of the same model."
        )
