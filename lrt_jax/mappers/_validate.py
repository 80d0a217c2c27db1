"""Checks at the public boundary, so bad input fails with advice, not an XLA trace.

Shape checks are static (they also run under ``jit``); value checks (NaN/Inf,
enough rows) need concrete arrays and run only after the cheap statistics show
a problem, so the happy path pays nothing for them.

Under tracing (``jax.jit``, ``jax.vmap``, ``jax.grad`` of a fit) values are
unknown, so each value check becomes a ``checkify.debug_check``: a no-op in a
plain ``jax.jit(fit)``, and an error once the function is functionalised by
:func:`checked_fit` (``checked_fit(jax.jit(mapper.fit))(x, y)`` raises
``checkify.JaxRuntimeError`` with the same advice as the eager ``ValueError``).
"""

from __future__ import annotations

import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

NONFINITE_TRACED = (
    "the inputs have NaN or Inf rows (or their statistics overflowed); drop or"
    " impute those rows before fitting, or accumulate in float64.")


def is_concrete(*trees) -> bool:
    """True when no leaf of ``trees`` is a tracer (values may be inspected)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def traced_check(predicate, message: str) -> None:
    """A value check inside traced code: raised by :func:`checked_fit`."""
    checkify.debug_check(predicate, message.replace("{", "{{").replace("}", "}}"))


def checked_fit(fit):
    """Wraps ``fit`` (possibly jitted or vmapped) so traced value checks raise.

    Example::

        state = checked_fit(jax.jit(ridge(1.0).fit))(x, y)

    Raises:
        checkify.JaxRuntimeError: a traced check failed (NaN/Inf inputs, too
            few rows, empty statistics); the message says what to fix.
    """
    checked = checkify.checkify(fit)

    def run(*args, **kwargs):
        error, result = checked(*args, **kwargs)
        error.throw()
        return result

    return run


def as_float_matrix(array, name: str) -> jax.Array:
    """Returns ``array`` as a floating ``[n, d]`` jax array or raises ValueError."""
    array = jnp.asarray(array)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [n, d] (one row per example), got shape"
            f" {array.shape}; reshape activations to [n, d] first, e.g."
            f" {name}.reshape(-1, {name}.shape[-1]).")
    if not jnp.issubdtype(array.dtype, jnp.floating) or jnp.finfo(array.dtype).bits < 32:
        # Integers, bf16 and fp16 are accumulated in float32: LAPACK has no
        # half-precision solvers, and half-precision Gram sums lose the fit.
        array = array.astype(jnp.float32)
    return array


def check_width(x, expected: int, what: str) -> None:
    """Raises when ``x [..., d]`` does not have the width the state was fitted on."""
    width = jnp.shape(x)[-1] if jnp.ndim(x) else None
    if width != expected:
        raise ValueError(
            f"x has width d={width} but this {what} was fitted on inputs of width"
            f" d={expected}; apply it to activations of the source it was fitted on.")


def warn_if_interpolating(n, d: int, fit_intercept: bool, solver: str) -> None:
    """Warns (eagerly) when an unregularised fit has too few rows and interpolates."""
    if not is_concrete(n):
        return
    n = int(n)
    if n <= d + (1 if fit_intercept else 0):
        warnings.warn(
            f"{solver} with n={n} rows and d={d} dimensions interpolates the"
            " training data (R² = 1 on train, nothing learned about held-out"
            " rows); use ridge with alpha > 0 (e.g. ridge(alphas=..., select='gcv')).",
            UserWarning, stacklevel=4)


def check_paired(x, y, *, y_optional: bool = False):
    """Validates a paired sample: ``x [n, d_s]``, ``y [n, d_t]`` with equal ``n``."""
    x = as_float_matrix(x, "x")
    if y is None and y_optional:
        return x, None
    y = as_float_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x has n={x.shape[0]} rows but y has n={y.shape[0]}; rows must be"
            " paired (row i of x and row i of y are the same token/example).")
    if x.shape[0] == 0:
        raise ValueError("x and y are empty (n=0); a fit needs at least one row.")
    return x, y


def _count_nonfinite_rows(array) -> tuple[int, int]:
    bad = ~np.all(np.isfinite(np.asarray(array)), axis=1)
    count = int(bad.sum())
    return count, (int(np.argmax(bad)) if count else -1)


def raise_for_nonfinite_rows(x, y) -> None:
    """Raises ValueError naming which input has NaN/Inf and in how many rows."""
    problems = []
    for name, array in (("x", x), ("y", y)):
        if array is None:
            continue
        count, first = _count_nonfinite_rows(array)
        if count:
            problems.append(f"{name} has {count} of {array.shape[0]} rows with NaN"
                            f" or Inf (first at row {first})")
    if problems:
        raise ValueError("; ".join(problems)
                         + ". Drop or impute those rows before fitting.")
    raise ValueError(
        "the inputs are finite but their statistics overflowed to Inf; rescale"
        " the activations or accumulate in float64 (init_stats(...,"
        " dtype=jnp.float64) under jax_enable_x64).")


def check_alpha(alpha, name: str = "alpha") -> float:
    """Returns ``alpha`` as float or raises for a negative/non-finite penalty."""
    if not isinstance(alpha, numbers.Real) or not np.isfinite(alpha) or alpha < 0:
        raise ValueError(
            f"{name} must be a finite number >= 0 (the ridge penalty), got"
            f" {alpha!r}; use 0 for no regularisation or a positive value.")
    return float(alpha)


def check_rank(rank: int, d_s: int, d_t: int, what: str) -> None:
    """Raises when ``rank`` exceeds ``min(d_s, d_t)`` or is not positive."""
    if rank < 1 or rank > min(d_s, d_t):
        raise ValueError(
            f"{what}={rank} must be between 1 and min(d_s, d_t) = min({d_s},"
            f" {d_t}) = {min(d_s, d_t)}; choose a smaller {what}.")


def check_enough_rows(n, d: int, solver: str) -> None:
    """Raises when a solver without regularisation would be underdetermined."""
    if not is_concrete(n):
        traced_check(n > d, _too_few_rows(f"n <= d={d}", solver))
        return
    n = int(n)
    if n <= d:
        raise ValueError(_too_few_rows(f"n={n} <= d={d}", solver))


def _too_few_rows(counts: str, solver: str) -> str:
    return (f"{solver} without regularisation needs more rows than dimensions"
            f" ({counts}): its covariance is singular. Collect more rows,"
            f" reduce d with pca(k), or regularise ({solver} with alpha > 0, or"
            " use ridge(alpha)).")
