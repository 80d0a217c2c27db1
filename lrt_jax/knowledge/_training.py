"""One optax loop for every trainer in this package: only the ``trainable`` pytree moves.

The loss closes over everything frozen (base parameters, teacher targets), so frozen
arrays receive no gradient and no update: they come out of training as the very
arrays that went in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from lrt_jax._optax import optimizer_update

# loss_fn(trainable, batch) -> (scalar loss, {name: scalar}) for logging.
LossFunction = Callable[[Any, Any], tuple[jax.Array, dict]]


def optimize_trainable(loss_fn: LossFunction, trainable, optimizer: optax.GradientTransformation,
                       batch_for_step: Callable[[int], Any], steps: int) -> tuple[Any, dict[str, np.ndarray]]:
    """Run ``steps`` optax updates of ``trainable``; batch ``i`` is ``batch_for_step(i)``.

    Returns:
      ``(trained, history)`` with ``history[name]`` a ``[steps]`` array of each logged
      loss component plus ``"loss"``.
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative; got {steps}.")

    @jax.jit
    def step(trainable, opt_state, batch):
        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable, batch)
        updates, opt_state = optimizer_update(optimizer, grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, {"loss": loss, **parts}

    opt_state = optimizer.init(trainable)
    records = []
    for index in range(steps):
        trainable, opt_state, logged = step(trainable, opt_state, batch_for_step(index))
        records.append(logged)
    history = {name: np.asarray([float(record[name]) for record in records]) for name in (records[0] if records else {})}
    return trainable, history
