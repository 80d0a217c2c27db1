"""Linear probe: logistic regression trained with optax, read as a steering direction."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrt_jax.steering._checks import check_activations, check_rank
from lrt_jax.steering._estimators import Provenance
from lrt_jax.steering._vector import SteeringVector
from lrt_jax._optax import optimizer_update


class ProbeResult(NamedTuple):
    """A fitted logistic-regression probe.

    Attributes:
      direction: :class:`SteeringVector`, the ``[d_model]`` unit vector ``weights / ‖weights‖``
        (points towards label 1; estimator ``"probe_direction(l2=...)"``, normalisation ``"unit"``).
      weights: ``[d_model]`` fitted weights in activation units.
      bias: scalar intercept, so ``P(label=1 | x) = sigmoid(x @ weights + bias)``.
      train_accuracy: fraction of training rows the probe classifies correctly.
    """

    direction: SteeringVector
    weights: jnp.ndarray
    bias: jnp.ndarray
    train_accuracy: float


def probe_direction(
    acts,
    labels,
    *,
    l2: float = 1e-3,
    steps: int = 500,
    learning_rate: float = 0.05,
    model: str = "",
    site: str = "",
    position_rule: str = "",
    dataset: str = "",
) -> ProbeResult:
    """Fit ``sigmoid(x @ w + b)`` to binary labels and return the unit direction of ``w``.

    Minimises ``mean(BCE(x @ w + b, y)) + l2 / 2 · ‖w‖²`` with Adam over the full
    batch for ``steps`` steps (compiled as one ``lax.scan``). The L2 term keeps
    ``w`` finite when the classes are separable, where the unpenalised optimum
    lies at infinity; it matches scikit-learn's ``LogisticRegression(C=1/(n·l2))``.

    The features are used as given. Standardise them first if their scales differ
    by orders of magnitude; the returned direction then lives in the standardised
    space.

    Args:
      acts: ``[n, d_model]`` activations.
      labels: ``[n]`` integers in ``{0, 1}``; both classes must occur.
      l2: strength of the L2 penalty on the weights (not on the bias).
      steps: number of full-batch Adam steps.
      learning_rate: Adam learning rate.
      model, site, position_rule, dataset: where the activations were read, recorded in
        the direction's info (see :func:`~lrt_jax.steering.diff_of_means`).

    Returns:
      A :class:`ProbeResult`.
    """
    check_activations("acts", acts)
    check_rank("labels", labels, 1, "[n]")
    labels_np = np.asarray(labels)
    if labels_np.shape[0] != np.shape(acts)[0]:
        raise ValueError(
            f"labels has {labels_np.shape[0]} entries but acts has {np.shape(acts)[0]} rows; "
            "give one label per activation row."
        )
    if not np.isin(labels_np, (0, 1)).all() or np.unique(labels_np).size != 2:
        raise ValueError("labels must be 0/1 and contain both classes, so the probe has something to separate.")

    inputs = jnp.asarray(acts, dtype=jnp.float32)
    targets = jnp.asarray(labels_np, dtype=jnp.float32)
    params = {"weights": jnp.zeros(inputs.shape[1]), "bias": jnp.zeros(())}
    params = _fit(params, inputs, targets, l2, steps, learning_rate)

    logits = inputs @ params["weights"] + params["bias"]
    accuracy = float(jnp.mean((logits > 0) == (targets > 0.5)))
    norm = jnp.linalg.norm(params["weights"])
    info = Provenance(model, site, position_rule, dataset).info(
        inputs.shape[1], f"probe_direction(l2={l2:g})", int(labels_np.sum()), int((labels_np == 0).sum()),
        normalisation="unit")
    direction = SteeringVector(params["weights"] / norm, info)
    return ProbeResult(direction, params["weights"], params["bias"], accuracy)


def _loss(params, inputs, targets, l2):
    logits = inputs @ params["weights"] + params["bias"]
    data_term = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))
    return data_term + 0.5 * l2 * jnp.sum(params["weights"] ** 2)


@functools.partial(jax.jit, static_argnames=("steps", "learning_rate"))
def _fit(params, inputs, targets, l2, steps, learning_rate):
    optimizer = optax.adam(learning_rate)

    def step(carry, _):
        params, opt_state = carry
        grads = jax.grad(_loss)(params, inputs, targets, l2)
        updates, opt_state = optimizer_update(optimizer, grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params
