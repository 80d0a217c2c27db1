"""Shared machinery of the closed-form solvers: stats in, affine state out.

Each closed-form factory supplies one function ``solve(moments) -> state``
(``moments`` from :func:`moments_from_stats`); :func:`closed_form_mapper`
turns it into a ``Mapper`` whose ``fit(x, y)`` is exactly
``fit_from_stats(statistics of x, y)`` — one code path, so chunked and
one-shot fits agree by construction.

The eigen-solver. With ``X̃ᵀX̃ = Q diag(λ) Qᵀ`` and ``P = Qᵀ X̃ᵀỸ``
``[d_s, d_t]``, every ridge-type weight is ``W(α) = Q diag(s(α)) P`` with the
*shrinkage* ``s_i(α) = 1/(λ_i + α)``, set to 0 where ``λ_i + α`` is below
the rounding level of the Gram (``d·eps·λ_max``): at ``α = 0`` this is the
minimum-norm least-squares solution (``pinv``), never a NaN.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _base, _lapack, _stats, _validate

_HIGHEST = jax.lax.Precision.HIGHEST


class GramEigen(NamedTuple):
    """Eigendecomposition of the source Gram and the projected cross moments.

    Attributes:
        values: ``[d_s]`` eigenvalues ``λ`` of ``X̃ᵀX̃``, ascending, clipped at 0.
        vectors: ``[d_s, d_s]`` eigenvectors ``Q`` (columns).
        projections: ``[d_s, d_t]`` ``P = Qᵀ X̃ᵀỸ``.
        cutoff: ``[]`` rounding level ``d·eps·λ_max`` below which a
            direction counts as null.
    """

    values: jax.Array
    vectors: jax.Array
    projections: jax.Array
    cutoff: jax.Array


@jax.jit
def decompose_gram(xx, xy) -> GramEigen:
    """``X̃ᵀX̃ = Q diag(λ) Qᵀ`` (one ``eigh``, ~9·d³ flops) and ``P = Qᵀ X̃ᵀỸ``."""
    values, vectors = jnp.linalg.eigh(xx)
    values = jnp.maximum(values, 0.0)
    cutoff = xx.shape[0] * jnp.finfo(xx.dtype).eps * values[-1]
    projections = jnp.matmul(vectors.T, xy, precision=_HIGHEST)
    return GramEigen(values, vectors, projections, cutoff)


def shrinkage(eigen: GramEigen, alpha) -> jax.Array:
    """``s(α) = 1/(λ + α)`` with null directions zeroed; ``[d_s]`` or ``[d_s, d_t]``.

    ``alpha`` is a scalar or a per-target ``[d_t]`` vector.
    """
    denominator = (eigen.values[:, None] + alpha[None, :]) if jnp.ndim(alpha) else (
        eigen.values + alpha)
    keep = denominator > eigen.cutoff
    return jnp.where(keep, 1.0 / jnp.where(keep, denominator, 1.0), 0.0)


def weight_from_eigen(eigen: GramEigen, alpha) -> jax.Array:
    """``W(α) = Q diag(s(α)) P``: ``[d_s, d_t]`` for a scalar or ``[d_t]`` α."""
    scale = shrinkage(eigen, alpha)
    scaled = eigen.projections * (scale if scale.ndim == 2 else scale[:, None])
    return jnp.matmul(eigen.vectors, scaled, precision=_HIGHEST)


def bias_for(moments: _stats.Moments, weight) -> jax.Array:
    """The intercept that makes the map exact at the means: ``ȳ − x̄ W``."""
    return moments.mean_y - jnp.matmul(moments.mean_x, weight, precision=_HIGHEST)


def closed_form_mapper(solve: Callable, *, fit_intercept: bool,
                       target_gram: bool = False,
                       check_moments: Callable | None = None) -> _base.Mapper:
    """Wraps ``solve(moments) -> state`` into a stats-capable ``Mapper``.

    Args:
        solve: pure function of :class:`Moments` returning an affine state.
        fit_intercept: centre the moments (and fit a bias) or not.
        target_gram: the solver needs the full ``YᵀY``.
        check_moments: optional ``check(moments)`` raising ValueError for
            inputs the solver cannot handle (run before ``solve``; value
            checks in it must go through ``_validate`` so they trace).

    Returns:
        ``Mapper(fit, apply_affine, fit_from_stats)``.
    """

    def fit_from_stats(stats):
        _stats.check_stats(stats)
        return solve_checked_stats(stats)

    def solve_checked_stats(stats):
        if target_gram and stats.yty is None:
            raise ValueError(
                "this solver needs the full target Gram YᵀY: create the statistics"
                " with init_stats(d_s, d_t, target_gram=True).")
        moments = _stats.moments_from_stats(stats, centered=fit_intercept)
        if check_moments is not None:
            check_moments(moments)
        return _lapack.run_decomposition(max(moments.xy.shape), solve, moments)

    def fit(x, y):
        x, y = _validate.check_paired(x, y)
        return solve_checked_stats(_stats.statistics_of(x, y, target_gram=target_gram))

    return _base.Mapper(fit, _base.apply_affine, fit_from_stats)
