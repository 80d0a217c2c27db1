"""Scores for choosing the ridge penalty from a grid (lower is better).

All three return ``[n_alphas, d_t]``: the criterion for each α and target
column, so a shared α minimises the mean over columns (the mean squared error
over all entries, as scikit-learn does) and a per-target α the column itself.
Notation as in ``_closed_form``: ``λ``, ``Q``, ``P = Qᵀ X̃ᵀỸ``, ``s = 1/(λ+α)``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _closed_form, _stats
from lrt_jax._broadcast import lift

_HIGHEST = jax.lax.Precision.HIGHEST


@partial(jax.jit, static_argnames="fit_intercept")
def gcv_scores(eigen, moments, alphas, fit_intercept: bool):
    """Classic GCV ``(RSS/n) / (1 − tr H/n)²`` from statistics only.

    ``W = Q diag(s) P`` gives ``RSS = Σỹ² − 2 Σ s P² + Σ λ s² P²`` per column
    and ``tr H = Σ λ s`` (+1 for the intercept): ``O(d_s·d_t)`` per α.
    """
    n = moments.count
    squared_projections = jnp.square(eigen.projections)

    def score(alpha):
        s = _closed_form.shrinkage(eigen, alpha)
        explained = jnp.matmul(2.0 * s - eigen.values * s * s, squared_projections,
                               precision=_HIGHEST)
        rss = jnp.maximum(moments.yy_diag - explained, 0.0)
        dof = jnp.sum(eigen.values * s) + (1.0 if fit_intercept else 0.0)
        denominator = jnp.square(1.0 - dof / n)
        return jnp.where(denominator > 0, rss / n / denominator, jnp.inf)

    return jax.lax.map(score, alphas)


@partial(jax.jit, static_argnames="fit_intercept")
def loo_scores(x, y, moments, eigen, alphas, fit_intercept: bool):
    """Exact mean squared leave-one-out error ``mean_i (r_i / (1 − h_ii))²``.

    With ``Z = X̃ Q`` ``[n, d_s]``: ``Ŷ = Z diag(s) P`` and
    ``h_ii = Σ_j Z_ij² s_j`` (+ ``1/n`` for the unpenalised intercept), the
    same quantities scikit-learn's ``RidgeCV`` (``cv=None``) uses.
    """
    x_centred = x.astype(moments.xx.dtype) - lift(moments.mean_x, x)
    y_centred = y.astype(moments.xx.dtype) - lift(moments.mean_y, y)
    rotated = jnp.matmul(x_centred, eigen.vectors, precision=_HIGHEST)
    rotated_sq = jnp.square(rotated)
    intercept_leverage = 1.0 / moments.count if fit_intercept else 0.0

    def score(alpha):
        s = _closed_form.shrinkage(eigen, alpha)
        fitted = jnp.matmul(rotated, eigen.projections * s[:, None],
                            precision=_HIGHEST)
        leverage = rotated_sq @ s + intercept_leverage
        errors = (y_centred - fitted) / (1.0 - leverage)[:, None]
        return jnp.mean(jnp.square(errors), axis=0)

    return jax.lax.map(score, alphas)


def kfold_scores(fold_stats, alphas, fit_intercept: bool):
    """Mean over folds of the held-out MSE, each fold scored from its statistics.

    For a held-out fold with shifts ``s_x``, ``s_y`` and a map ``(W, b)`` the
    residual is ``r = (y − s_y) − (x − s_x) W + c`` with ``c = s_y − s_x W − b``,
    so ``Σ r²`` needs only the fold's sums: no second pass over its rows.
    """
    per_fold = []
    for held_out, test in enumerate(fold_stats):
        train = None
        for index, stats in enumerate(fold_stats):
            if index != held_out:
                train = stats if train is None else _stats.merge_stats(train, stats)
        per_fold.append(_held_out_mse(
            _stats.moments_from_stats(train, centered=fit_intercept), test, alphas))
    return jnp.mean(jnp.stack(per_fold), axis=0)


@jax.jit
def _held_out_mse(train_moments, test: _stats.SufficientStats, alphas):
    eigen = _closed_form.decompose_gram(train_moments.xx, train_moments.xy)
    dot = partial(jnp.matmul, precision=_HIGHEST)

    def score(alpha):
        weight = _closed_form.weight_from_eigen(eigen, alpha)
        offset = _closed_form.bias_for(train_moments, weight)
        c = test.shift_y - dot(test.shift_x, weight) - offset
        sse = (test.y_sq - 2.0 * jnp.sum(test.xty * weight, axis=0)
               + jnp.sum(weight * dot(test.xtx, weight), axis=0)
               + 2.0 * c * (test.sum_y - dot(test.sum_x, weight))
               + test.count * c * c)
        return sse / test.count

    return jax.lax.map(score, alphas)
