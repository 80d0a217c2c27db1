"""One optax step under standard dtype promotion, so training runs under strict promotion too.

optax mixes its ``int32`` step count with Python floats inside its transforms (bias
corrections, schedules); our own code is strict, so only that call opts out.
"""

from __future__ import annotations

import jax

__all__ = ["optimizer_update"]


def optimizer_update(optimizer, grads, opt_state, params):
    """``optimizer.update(grads, opt_state, params)`` with standard dtype promotion: ``(updates, state)``."""
    with jax.numpy_dtype_promotion("standard"):
        return optimizer.update(grads, opt_state, params)
