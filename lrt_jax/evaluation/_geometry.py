"""Scores with intervals: the bootstrap over rows, run as one ``vmap`` over resample index arrays.

A percentile bootstrap draws ``B`` index arrays ``idx [B, n]`` (rows with replacement),
evaluates a statistic on every resample and reads the interval from the quantiles of
the ``B`` values. Here the statistic is any traceable function of arrays that share a
leading row axis, and the ``B`` evaluations are ``jax.vmap`` over the rows of ``idx``
(``batch_size`` bounds memory through :func:`jax.lax.map`), so a whole interval is one
compiled program that composes with an outer ``jit`` or ``vmap`` (over layer pairs, say)::

    idx = bootstrap_indices(jax.random.key(0), n_rows=y.shape[0], n_resamples=1000)
    draws = bootstrap_statistic(lrt_jax.metrics.r2_score, (y, y_hat), idx)   # [1000]
    low, high = percentile_interval(draws)                                    # 95%

Statistics that pair rows with each other (mutual k-NN) are not resampled directly —
a duplicated row would be its own nearest neighbour — but through their per-row terms
(:func:`mutual_knn_per_row`), whose mean is the score. The point scores themselves are
those of :mod:`lrt_jax.metrics` (R², mean cosine, linear CKA, mutual k-NN).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from lrt_jax import metrics


class Interval(NamedTuple):
    """A score and its percentile bootstrap interval (each ``[]``, or batched)."""

    value: jax.Array
    low: jax.Array
    high: jax.Array


def bootstrap_indices(key: jax.Array, n_rows: int, n_resamples: int) -> jax.Array:
    """``[n_resamples, n_rows]`` int32 row indices drawn uniformly with replacement."""
    if n_rows < 1 or n_resamples < 1:
        raise ValueError(f"the bootstrap needs at least one row and one resample; got n_rows={n_rows}, "
                         f"n_resamples={n_resamples}.")
    return jax.random.randint(key, (n_resamples, n_rows), 0, n_rows, dtype=jnp.int32)


def bootstrap_statistic(statistic: Callable, arrays: Sequence, indices: jax.Array, *,
                        batch_size: int | None = None) -> jax.Array:
    """``statistic(*(a[idx] for a in arrays))`` for every row ``idx`` of ``indices``; ``[B, ...]``.

    Args:
      statistic: traceable function of the resampled arrays, e.g. ``metrics.r2_score``.
      arrays: arrays with the same leading row axis ``n``.
      indices: ``[B, n']`` row indices (:func:`bootstrap_indices`; ``n'`` is usually ``n``).
      batch_size: resamples evaluated at once (``jax.lax.map`` over chunks); ``None``: all at once.
    """
    arrays = tuple(jnp.asarray(array) for array in arrays)
    rows = {array.shape[0] for array in arrays}
    if len(rows) != 1:
        raise ValueError(f"the arrays must share their leading row axis; got shapes {[a.shape for a in arrays]}.")

    def one(idx):
        return statistic(*(jnp.take(array, idx, axis=0) for array in arrays))

    if batch_size is None:
        return jax.vmap(one)(indices)
    return jax.lax.map(one, indices, batch_size=batch_size)


def percentile_interval(draws: jax.Array, confidence: float = 0.95) -> tuple[jax.Array, jax.Array]:
    """The ``(1 ∓ confidence)/2`` quantiles of ``draws`` over its first axis (linear interpolation)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    tail = (1.0 - confidence) / 2.0
    quantiles = jnp.quantile(draws, jnp.asarray([tail, 1.0 - tail], draws.dtype), axis=0)
    return quantiles[0], quantiles[1]


def bootstrap_interval(statistic: Callable, arrays: Sequence, *, key: jax.Array, n_resamples: int = 1000,
                       confidence: float = 0.95, batch_size: int | None = None) -> Interval:
    """``Interval(statistic(*arrays), low, high)``: the point value and its percentile interval.

    Example::

        r2 = bootstrap_interval(lrt_jax.metrics.r2_score, (y, y_hat), key=jax.random.key(0))
    """
    arrays = tuple(jnp.asarray(array) for array in arrays)
    indices = bootstrap_indices(key, arrays[0].shape[0], n_resamples)
    low, high = percentile_interval(bootstrap_statistic(statistic, arrays, indices, batch_size=batch_size),
                                    confidence)
    return Interval(statistic(*arrays), low, high)


def mutual_knn_per_row(x, y, k: int = 10, *, metric: str = "cosine") -> jax.Array:
    """``[n]``: ``|kNN_x(i) ∩ kNN_y(i)| / k`` per row (self excluded); the mean is
    :func:`lrt_jax.metrics.mutual_knn_overlap`."""
    x, y = metrics._check_same_rows(x, y, ("x", "y"))
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, n-1] = [1, {x.shape[0] - 1}], got {k}.")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}.")
    nx, ny = metrics._neighbours(x, k, metric), metrics._neighbours(y, k, metric)
    return jnp.sum(nx[:, :, None] == ny[:, None, :], axis=(1, 2)) / k


def mean_shift_ratio(shifted, reference) -> jax.Array:
    """``mean(shifted) / mean(reference)`` over rows (axis 0): the relative shift of the LRT experiment.

    With ``[n_prompts, n_attributes]`` arrays the ratio is taken per attribute and averaged.
    """
    ratio = jnp.mean(shifted, axis=0) / jnp.mean(reference, axis=0)
    return jnp.mean(ratio)
