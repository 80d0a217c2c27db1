"""Streamed sufficient statistics: fit closed-form maps when n exceeds memory.

Every closed-form solver here (lstsq, ridge with GCV/k-fold, procrustes,
reduced-rank, cca, pca, whiten) needs only

    count n,   Σx [d_s],   Σy [d_t],   XᵀX [d_s, d_s],   XᵀY [d_s, d_t],
    Σy² [d_t]  (and the full YᵀY [d_t, d_t] for cca),

which add up chunk by chunk::

    stats = init_stats(d_s, d_t)
    for x_chunk, y_chunk in chunks:                     # [m, d_s], [m, d_t]
        stats = accumulate_stats(stats, x_chunk, y_chunk)
    state = ridge(1.0).fit_from_stats(stats)            # == ridge(1.0).fit(x, y)

Numerics. Sums are taken about a *shift* (the mean of the first rows seen),
``Σ(x − s)(x − s)ᵀ``, not about zero: LM activations have coordinates whose
mean dwarfs their spread, and the textbook ``XᵀX − n·μμᵀ`` then cancels away
every significant digit in float32. The statistics are accumulated in the
dtype of ``init_stats`` (float32 by default, float64 under
``jax_enable_x64``); the GEMMs run at ``Precision.HIGHEST`` so that GPUs do
not silently drop to TF32.

Speed. The sums are GEMM-bound (``2·n·d_s·(d_s + d_t)`` flops); :mod:`._gram` holds the
blocked kernel that computes them.

Sharding. ``accumulate_stats`` is a plain jitted reduction over rows, so
chunks sharded along n under a mesh are summed across the data axis by XLA.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.mappers import _validate
from lrt_jax.mappers._gram import assemble_gram, panel_bounds, row_sums

_HIGHEST = jax.lax.Precision.HIGHEST
_SHIFT_ROWS = 8192           # the shift is the mean of the first rows seen


class SufficientStats(NamedTuple):
    """Sums over rows about fixed shifts ``s_x``, ``s_y``.

    Attributes:
        count: ``[]`` number of rows (float, in the stats dtype).
        shift_x: ``[d_s]`` the shift ``s_x`` (mean of the first rows seen).
        shift_y: ``[d_t]`` the shift ``s_y``.
        sum_x: ``[d_s]`` ``Σ (x − s_x)``.
        sum_y: ``[d_t]`` ``Σ (y − s_y)``.
        xtx: ``[d_s, d_s]`` ``Σ (x − s_x)(x − s_x)ᵀ``.
        xty: ``[d_s, d_t]`` ``Σ (x − s_x)(y − s_y)ᵀ``.
        y_sq: ``[d_t]`` ``Σ (y − s_y)²`` (the diagonal of YᵀY).
        yty: ``[d_t, d_t]`` ``Σ (y − s_y)(y − s_y)ᵀ``, or ``None`` unless
            requested with ``init_stats(..., target_gram=True)`` (cca needs it).
    """

    count: jax.Array
    shift_x: jax.Array
    shift_y: jax.Array
    sum_x: jax.Array
    sum_y: jax.Array
    xtx: jax.Array
    xty: jax.Array
    y_sq: jax.Array
    yty: Optional[jax.Array] = None


class Moments(NamedTuple):
    """Second moments ready for a solver (centred or about zero).

    Attributes:
        count: ``[]`` n.
        mean_x: ``[d_s]`` (zeros when not centred).
        mean_y: ``[d_t]`` (zeros when not centred).
        xx: ``[d_s, d_s]`` ``X̃ᵀX̃`` with ``X̃`` centred (or raw).
        xy: ``[d_s, d_t]`` ``X̃ᵀỸ``.
        yy_diag: ``[d_t]`` ``diag(ỸᵀỸ)``.
        yy: ``[d_t, d_t]`` ``ỸᵀỸ`` or ``None``.
    """

    count: jax.Array
    mean_x: jax.Array
    mean_y: jax.Array
    xx: jax.Array
    xy: jax.Array
    yy_diag: jax.Array
    yy: Optional[jax.Array]


def init_stats(d_s: int, d_t: int, *, dtype=jnp.float32,
               target_gram: bool = False) -> SufficientStats:
    """Empty statistics for ``x [·, d_s]`` and ``y [·, d_t]``.

    Args:
        d_s: source width.
        d_t: target width.
        dtype: accumulation dtype; ``jnp.float64`` requires ``jax_enable_x64``.
        target_gram: also accumulate the full ``YᵀY`` (costs ``2·n·d_t²``
            flops; only ``cca`` needs it).

    Returns:
        A ``SufficientStats`` of zeros.
    """
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in (d_s, d_t)):
        raise ValueError(f"init_stats needs widths d_s, d_t >= 0 (integers), got"
                         f" d_s={d_s!r}, d_t={d_t!r}.")
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "float64 statistics need jax_enable_x64: call"
            " jax.config.update('jax_enable_x64', True) first, or use float32.")
    return _zero_stats(int(d_s), int(d_t), jnp.dtype(dtype), bool(target_gram))


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _zero_stats(d_s, d_t, dtype, target_gram) -> SufficientStats:
    zeros = partial(jnp.zeros, dtype=dtype)     # one dispatch, not eight
    return SufficientStats(
        count=zeros(()), shift_x=zeros((d_s,)), shift_y=zeros((d_t,)),
        sum_x=zeros((d_s,)), sum_y=zeros((d_t,)), xtx=zeros((d_s, d_s)),
        xty=zeros((d_s, d_t)), y_sq=zeros((d_t,)),
        yty=zeros((d_t, d_t)) if target_gram else None)


@partial(jax.jit, static_argnames="blocked")
def _accumulate(stats: SufficientStats, x, y, blocked: bool = True) -> SufficientStats:
    dtype = stats.xtx.dtype
    n, d_s = x.shape
    target_gram = stats.yty is not None
    first = stats.count == 0
    head = min(n, _SHIFT_ROWS)
    shift_x = jnp.where(first, x[:head].astype(dtype).mean(0), stats.shift_x)
    shift_y = jnp.where(first, y[:head].astype(dtype).mean(0), stats.shift_y)
    width = d_s + y.shape[1] if target_gram else d_s
    bounds = panel_bounds(width)
    panels, sum_z, y_sq = row_sums(x, y, shift_x, shift_y, bounds, dtype, blocked)
    gram = assemble_gram(panels, bounds, width)
    return SufficientStats(
        count=stats.count + n, shift_x=shift_x, shift_y=shift_y,
        sum_x=stats.sum_x + sum_z[:d_s], sum_y=stats.sum_y + sum_z[d_s:],
        xtx=stats.xtx + gram[:d_s, :d_s], xty=stats.xty + gram[:d_s, d_s:],
        y_sq=stats.y_sq + y_sq,
        yty=stats.yty + gram[d_s:, d_s:] if target_gram else None)


def _on_one_device(*arrays) -> bool:
    """Concrete arrays on one CPU device: then rows are blocked.

    Accelerators have the memory for one big GEMM and no page-fault problem;
    sharded or traced inputs are left to XLA's partitioner.
    """
    return all(isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer)
               and len(a.sharding.device_set) == 1
               and next(iter(a.sharding.device_set)).platform == "cpu" for a in arrays)


def accumulate_stats(stats: SufficientStats, x_chunk, y_chunk) -> SufficientStats:
    """Adds a chunk of paired rows to the statistics (pure; jittable).

    Args:
        stats: statistics so far (from ``init_stats`` or a previous call).
        x_chunk: ``[m, d_s]`` source rows; may be sharded along m.
        y_chunk: ``[m, d_t]`` target rows, paired with ``x_chunk``.

    Returns:
        New statistics covering the old rows and this chunk. On the first
        chunk the shifts are set to the mean of its first rows.
    """
    x_chunk, y_chunk = _validate.check_paired(x_chunk, y_chunk)
    if (x_chunk.shape[1], y_chunk.shape[1]) != (stats.xtx.shape[0],
                                                stats.xty.shape[1]):
        raise ValueError(
            f"chunk widths (d_s={x_chunk.shape[1]}, d_t={y_chunk.shape[1]}) do"
            f" not match the statistics (d_s={stats.xtx.shape[0]},"
            f" d_t={stats.xty.shape[1]}) made by init_stats.")
    return _accumulate(stats, x_chunk, y_chunk,
                       blocked=_on_one_device(x_chunk, y_chunk))


def merge_stats(a: SufficientStats, b: SufficientStats) -> SufficientStats:
    """Combines statistics of disjoint row sets (e.g. folds, files, hosts).

    ``b`` is re-expressed about ``a``'s shifts: with ``δ = s_b − s_a``,
    ``Σ(x − s_a)(x − s_a)ᵀ = S_b + δ Σ_bᵀ + Σ_b δᵀ + n_b δδᵀ``. Exact up to
    rounding; an empty ``a`` simply adopts ``b``.

    Raises:
        ValueError: the statistics have different widths or only one has ``YᵀY``.
    """
    widths = [(s.xtx.shape[0], s.xty.shape[1]) for s in (a, b)]
    if widths[0] != widths[1]:
        raise ValueError(
            f"cannot merge statistics of widths (d_s, d_t)={widths[0]} and"
            f" {widths[1]}; merge only statistics of the same source and target.")
    if (a.yty is None) != (b.yty is None):
        raise ValueError("cannot merge statistics with and without the target Gram"
                         " YᵀY; create both with the same init_stats(target_gram=...).")
    return _merge(a, b)


@jax.jit
def _merge(a: SufficientStats, b: SufficientStats) -> SufficientStats:
    a_empty = a.count == 0
    shift_x = jnp.where(a_empty, b.shift_x, a.shift_x)
    shift_y = jnp.where(a_empty, b.shift_y, a.shift_y)
    b = _reshift(b, shift_x, shift_y)
    return SufficientStats(
        a.count + b.count, shift_x, shift_y,
        *[getattr(a, name) + getattr(b, name) if getattr(a, name) is not None
          else None for name in SufficientStats._fields[3:]])


def _reshift(stats: SufficientStats, shift_x, shift_y) -> SufficientStats:
    delta_x, delta_y = stats.shift_x - shift_x, stats.shift_y - shift_y
    n = stats.count
    outer = jnp.outer
    yty = None
    if stats.yty is not None:
        yty = (stats.yty + outer(delta_y, stats.sum_y) + outer(stats.sum_y, delta_y)
               + n * outer(delta_y, delta_y))
    return SufficientStats(
        count=n, shift_x=shift_x, shift_y=shift_y,
        sum_x=stats.sum_x + n * delta_x, sum_y=stats.sum_y + n * delta_y,
        xtx=(stats.xtx + outer(delta_x, stats.sum_x) + outer(stats.sum_x, delta_x)
             + n * outer(delta_x, delta_x)),
        xty=(stats.xty + outer(delta_x, stats.sum_y) + outer(stats.sum_x, delta_y)
             + n * outer(delta_x, delta_y)),
        y_sq=stats.y_sq + 2 * delta_y * stats.sum_y + n * delta_y ** 2,
        yty=yty)


@partial(jax.jit, static_argnames="centered")
def moments_from_stats(stats: SufficientStats, centered: bool = True) -> Moments:
    """Second moments about the mean (``centered``) or about zero.

    Centred: ``X̃ᵀX̃ = S_xx − n·m mᵀ`` with ``m = Σ(x − s)/n`` small, so the
    subtraction is benign. About zero: the statistics re-expressed with
    shift 0 (``fit_intercept=False``).
    """
    n = stats.count
    if not centered:
        zero_x, zero_y = jnp.zeros_like(stats.shift_x), jnp.zeros_like(stats.shift_y)
        raw = _reshift(stats, zero_x, zero_y)
        return Moments(n, zero_x, zero_y, raw.xtx, raw.xty, raw.y_sq, raw.yty)
    mx, my = stats.sum_x / n, stats.sum_y / n
    yy = None if stats.yty is None else stats.yty - n * jnp.outer(my, my)
    return Moments(
        count=n, mean_x=stats.shift_x + mx, mean_y=stats.shift_y + my,
        xx=stats.xtx - n * jnp.outer(mx, mx), xy=stats.xty - n * jnp.outer(mx, my),
        yy_diag=stats.y_sq - n * my ** 2, yy=yy)


def transform_source_stats(stats: SufficientStats, weight, offset) -> SufficientStats:
    """Statistics of ``x @ weight + offset`` from those of ``x`` (exact).

    With the shift mapped along (``s' = s W + b``) the centred sums transform
    linearly: ``Σx' = Σx W``, ``X'ᵀX' = Wᵀ XᵀX W``, ``X'ᵀY = Wᵀ XᵀY``. This
    lets ``chain(pca(k), ridge(α)).fit_from_stats`` work on streamed data.

    Args:
        stats: statistics of ``x [·, d_s]``.
        weight: ``[d_s, d_k]``.
        offset: ``[d_k]``.
    """
    dot = partial(jnp.matmul, precision=_HIGHEST)
    return stats._replace(
        shift_x=dot(stats.shift_x, weight) + offset, sum_x=dot(stats.sum_x, weight),
        xtx=dot(dot(weight.T, stats.xtx), weight), xty=dot(weight.T, stats.xty))


def statistics_of(x, y, *, target_gram: bool = False) -> SufficientStats:
    """One-shot statistics of validated ``x``, ``y`` in their float dtype (≥ float32).

    Eagerly, non-finite statistics raise ValueError naming the bad rows; under
    tracing the same condition is a ``checkify`` check (see ``_validate``).
    """
    wide = jnp.float64 in (jnp.dtype(x.dtype), jnp.dtype(y.dtype))
    dtype = jnp.dtype(jnp.float64 if wide else jnp.float32)  # accumulate in ≥ float32, explicitly
    stats = init_stats(x.shape[1], y.shape[1], dtype=dtype, target_gram=target_gram)
    stats = _accumulate(stats, x, y, blocked=_on_one_device(x, y))
    if not _validate.is_concrete(stats):
        _validate.traced_check(_all_finite(stats), _validate.NONFINITE_TRACED)
    elif not stats_are_finite(stats):
        _validate.raise_for_nonfinite_rows(x, y)
    return stats


@jax.jit
def _all_finite(stats: SufficientStats) -> jax.Array:
    return jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(stats)]))


def stats_are_finite(stats: SufficientStats) -> bool:
    """True when every statistic is finite (NaN/Inf rows poison the sums)."""
    return bool(_all_finite(stats))


def check_stats(stats: SufficientStats) -> None:
    """Raises ValueError for empty or non-finite statistics."""
    if not isinstance(stats, SufficientStats):
        raise ValueError(
            f"expected SufficientStats from init_stats/accumulate_stats, got"
            f" {type(stats).__name__}.")
    if not _validate.is_concrete(stats):
        _validate.traced_check(stats.count > 0, _EMPTY)
        _validate.traced_check(_all_finite(stats), _NONFINITE_STATS)
        return
    if float(stats.count) == 0:
        raise ValueError(_EMPTY)
    if not stats_are_finite(stats):
        raise ValueError(_NONFINITE_STATS)


_EMPTY = ("the statistics are empty (count=0); accumulate_stats at"
          " least one chunk before fitting.")
_NONFINITE_STATS = (
    "the statistics contain NaN or Inf: some accumulated chunk had"
    " non-finite rows (or float32 overflowed). Check each chunk with"
    " jnp.isfinite(x).all() before accumulate_stats, or use float64.")
