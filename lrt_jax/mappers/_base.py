"""The mapper protocol: a pair of pure functions and the affine view of a state.

A *mapper* is built by a factory (``ridge(...)``, ``lstsq()``, ``pca(k)``, ...)
and is a ``Mapper(fit, apply, fit_from_stats)`` of pure functions:

* ``fit(x, y) -> state`` with ``x`` ``[n, d_s]`` and ``y`` ``[n, d_t]``;
* ``apply(state, x) -> y_hat`` with ``y_hat`` ``[n, d_t]``;
* ``fit_from_stats(stats) -> state`` for solvers that only need streamed
    sufficient statistics (``None`` for those that need the rows themselves).

States are NamedTuples of arrays, hence pytrees: they jit, vmap, shard and
checkpoint like any other tree.

Precision. ``fit`` accumulates bf16/fp16 (and integer) inputs in float32, so a
fit on half-precision rows equals the fit on the same values cast to float32;
states are float32 (float64 under x64 with float64 inputs). ``apply`` computes
in the wider of the input's and the state's float dtype and returns the
input's dtype: bf16 activations in, bf16 predictions out (rounded once, at the
end); an integer input comes back in the state's dtype.

Affine states follow one orientation, row vectors on the left::

        apply(state, x) == x @ linear(state) + bias(state)
        linear(state): [d_s, d_t]      bias(state): [d_t]

A state is affine when its class has a method ``affine_parts() -> (W, b)``;
a ``chain(...)`` of affine stages composes its stages' parts, so ``linear``
and ``bias`` always describe the whole map in the original coordinates.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _validate
from lrt_jax._broadcast import lift, widest_float


class Mapper(NamedTuple):
    """A mapper: pure ``fit``/``apply`` closures (optax-style).

    Attributes:
        fit: ``fit(x [n, d_s], y [n, d_t]) -> state``.
        apply: ``apply(state, x [n, d_s]) -> y_hat [n, d_t]``.
        fit_from_stats: ``fit_from_stats(stats: SufficientStats) -> state``, or
            ``None`` when the solver needs the rows (gradient fits, LOO selection).
    """

    fit: Callable
    apply: Callable
    fit_from_stats: Optional[Callable] = None


class NotAffineError(ValueError):
    """Raised when asking for the linear part of a map that has none."""


class AffineState(NamedTuple):
    """An affine map ``y_hat = x @ weight + bias``.

    Attributes:
        weight: ``[d_s, d_t]``.
        bias: ``[d_t]``.
    """

    weight: jax.Array
    bias: jax.Array

    def affine_parts(self):
        return self.weight, self.bias


def in_input_dtype(out, x):
    """``out`` cast to ``x``'s dtype when ``x`` is floating (see "Precision" above)."""
    x_dtype = jnp.result_type(x)
    return out.astype(x_dtype) if jnp.issubdtype(x_dtype, jnp.floating) else out


def upcast_input(x):
    """``x`` in at least float32: the dtype ``apply`` computes in before rounding back."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits >= 32:
        return x
    return x.astype(jnp.float32)


def apply_affine(state, x):
    """Applies any affine state: ``x @ W + b``; ``x`` is ``[..., d_s]``, the result has ``x``'s dtype."""
    weight, offset = state.affine_parts()
    _validate.check_width(x, weight.shape[0], "map")
    dtype = widest_float(upcast_input(x), weight)
    out = jnp.matmul(jnp.asarray(x).astype(dtype), weight.astype(dtype), precision=jax.lax.Precision.HIGHEST)
    return in_input_dtype(out + lift(offset.astype(dtype), out), x)


def affine_parts(state):
    """Returns ``(W [d_s, d_t], b [d_t])`` of an affine state or raises.

    Raises:
        NotAffineError: the state (e.g. an MLP gradient map) has no linear part.
    """
    if not hasattr(state, "affine_parts"):
        raise NotAffineError(
                f"{type(state).__name__} is not an affine map, so it has no linear part"
                " or bias; transfer vectors through it with `apply` (e.g. apply(state,"
                " mean_pos) - apply(state, mean_neg)) or fit an affine mapper instead.")
    return state.affine_parts()


def linear(state) -> jax.Array:
    """The linear part ``W`` ``[d_s, d_t]`` of an affine state (chains included).

    Transfer a direction without the offset as ``v @ linear(state)``.

    Raises:
        NotAffineError: for non-affine states (MLP gradient maps).
    """
    return affine_parts(state)[0]


def bias(state) -> jax.Array:
    """The bias ``b`` ``[d_t]`` of an affine state (chains included).

    ``apply(state, x) == x @ linear(state) + bias(state)``.

    Raises:
        NotAffineError: for non-affine states (MLP gradient maps).
    """
    return affine_parts(state)[1]
