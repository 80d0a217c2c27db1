"""Maps trained by gradient descent with optax: affine or a one-hidden-layer MLP.

For losses the closed forms cannot handle (cosine, a custom callable) or
non-linear maps. Training is one ``jax.lax.scan`` over ``steps`` minibatches
drawn with replacement (full batch when ``batch_size`` is ``None``); the
whole fit is a pure function of ``(x, y)`` and the seed.

Initialisation: ``weight = 0`` (affine) or He-normal (MLP hidden layer) and
output bias ``= ȳ``, so training starts from the best constant predictor.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrt_jax.mappers import _base, _validate
from lrt_jax._broadcast import lift, widest_float
from lrt_jax._optax import optimizer_update

_HIGHEST = jax.lax.Precision.HIGHEST
_MODELS = ("affine", "mlp")


class GradientAffineState(NamedTuple):
    """Affine map trained by gradient descent.

    Attributes:
        weight: ``[d_s, d_t]``.
        bias: ``[d_t]``.
        losses: ``[steps]`` training loss per step (on its minibatch).
    """

    weight: jax.Array
    bias: jax.Array
    losses: jax.Array

    def affine_parts(self):
        return self.weight, self.bias


class MLPState(NamedTuple):
    """``ŷ = gelu(x W₁ + b₁) W₂ + b₂`` — not affine: ``linear``/``bias`` raise.

    Attributes:
        hidden_weight: ``[d_s, hidden]``.
        hidden_bias: ``[hidden]``.
        output_weight: ``[hidden, d_t]``.
        output_bias: ``[d_t]``.
        losses: ``[steps]`` training loss per step.
    """

    hidden_weight: jax.Array
    hidden_bias: jax.Array
    output_weight: jax.Array
    output_bias: jax.Array
    losses: jax.Array


def mse_loss(y_hat, y):
    """Mean squared error over all entries."""
    return jnp.mean(jnp.square(y_hat - y))


def cosine_loss(y_hat, y):
    """``1 − mean cosine similarity`` of rows."""
    return 1.0 - jnp.mean(optax.cosine_similarity(y_hat, y, epsilon=1e-12))


_LOSSES = {"mse": mse_loss, "cosine": cosine_loss}


_DIVERGED = ("gradient fit diverged (loss is NaN/Inf); lower the"
             " learning rate or standardize() the inputs first.")


def _predict(params, x):
    if isinstance(params, GradientAffineState):
        out = jnp.matmul(x.astype(widest_float(x, params.weight)), params.weight, precision=_HIGHEST)
        return out + lift(params.bias, out)
    hidden = jnp.matmul(x.astype(widest_float(x, params.hidden_weight)), params.hidden_weight, precision=_HIGHEST)
    hidden = jax.nn.gelu(hidden + lift(params.hidden_bias, hidden))
    out = jnp.matmul(hidden, params.output_weight, precision=_HIGHEST)
    return out + lift(params.output_bias, out)


def _initial_params(model, key, x, y, hidden):
    """Parameters only: ``losses`` is ``None`` (an empty pytree) during training."""
    d_s, d_t = x.shape[1], y.shape[1]
    if model == "affine":
        return GradientAffineState(jnp.zeros((d_s, d_t), x.dtype), y.mean(0), None)
    hidden_weight = jax.random.normal(key, (d_s, hidden), x.dtype) * jnp.sqrt(2.0 / d_s)
    return MLPState(hidden_weight, jnp.zeros((hidden,), x.dtype),
                    jnp.zeros((hidden, d_t), x.dtype), y.mean(0), None)


@partial(jax.jit, static_argnames=("model", "loss", "optimizer", "steps",
                                   "batch_size", "hidden"))
def _train(x, y, seed, *, model, loss, optimizer, steps, batch_size, hidden):
    init_key, batch_key = jax.random.split(jax.random.PRNGKey(seed))
    params = _initial_params(model, init_key, x, y, hidden)

    def objective(params, xb, yb):
        return loss(_predict(params, xb), yb)

    def step(carry, key):
        params, opt_state = carry
        if batch_size is None:
            xb, yb = x, y
        else:
            rows = jax.random.randint(key, (batch_size,), 0, x.shape[0])
            xb, yb = x[rows], y[rows]
        value, grads = jax.value_and_grad(objective)(params, xb, yb)
        updates, opt_state = optimizer_update(optimizer, grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, _), losses = jax.lax.scan(
        step, (params, optimizer.init(params)), jax.random.split(batch_key, steps))
    return params._replace(losses=losses)


def gradient(model: str = "affine", loss: str | Callable = "mse",
             optimizer: optax.GradientTransformation | None = None, steps: int = 1000,
             batch_size: int | None = 256, *, hidden: int = 512,
             seed: int = 0) -> _base.Mapper:
    """A map trained with optax.

    Args:
        model: ``"affine"`` (``GradientAffineState``; ``linear``/``bias`` work)
            or ``"mlp"`` (``MLPState``, one GELU hidden layer of ``hidden``).
        loss: ``"mse"``, ``"cosine"`` or ``loss(y_hat [b, d_t], y [b, d_t]) ->
            scalar``.
        optimizer: an optax transformation (default ``optax.adam(1e-3)``).
        steps: optimisation steps.
        batch_size: rows per step, sampled with replacement; ``None`` = full batch.
        hidden: hidden width of the MLP.
        seed: PRNG seed for initialisation and batches.

    Returns:
        ``Mapper`` without ``fit_from_stats`` (gradient fits need the rows).
    """
    if model not in _MODELS:
        raise ValueError(f"model must be one of {_MODELS}, got {model!r}.")
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {tuple(_LOSSES)} or a callable,"
                             f" got {loss!r}.")
        loss = _LOSSES[loss]
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if steps < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(f"steps and batch_size must be positive, got steps={steps},"
                         f" batch_size={batch_size}.")
    training = dict(model=model, loss=loss, optimizer=optimizer, steps=steps,
                    batch_size=batch_size, hidden=hidden)

    def fit(x, y):
        x, y = _validate.check_paired(x, y)
        finite = jnp.isfinite(x).all() & jnp.isfinite(y).all()
        if not _validate.is_concrete(finite):
            _validate.traced_check(finite, _validate.NONFINITE_TRACED)
            state = _train(x, y, seed, **training)
            _validate.traced_check(jnp.isfinite(state.losses[-1]), _DIVERGED)
            return state
        if not bool(finite):
            _validate.raise_for_nonfinite_rows(x, y)
        state = _train(x, y, seed, **training)
        if not bool(jnp.isfinite(state.losses[-1])):
            raise ValueError(_DIVERGED)
        return state

    def apply(state, x):
        width = (state.weight if isinstance(state, GradientAffineState)
                 else state.hidden_weight).shape[0]
        _validate.check_width(x, width, "map")
        return _base.in_input_dtype(_predict(state, _base.upcast_input(x)), x)

    return _base.Mapper(fit, apply, None)
