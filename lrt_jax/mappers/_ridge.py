"""Least squares and ridge regression (one α, or α chosen by GCV, LOO or k-fold).

Ridge minimises ``‖Y − X W − 1 bᵀ‖²_F + α ‖W‖²_F`` with an unpenalised
intercept, like scikit-learn's ``Ridge``: centre, then

    W = (X̃ᵀX̃ + α I)⁻¹ X̃ᵀỸ,        b = ȳ − x̄ W.

One α is solved by Cholesky (``d³/3`` flops). A grid of α shares one
eigendecomposition ``X̃ᵀX̃ = Q diag(λ) Qᵀ`` (see ``_closed_form``) and is
scored by one of

* ``select="gcv"`` — generalised cross-validation from the statistics alone,
  ``GCV(α) = (RSS(α)/n) / (1 − tr H(α)/n)²`` with
  ``tr H = [1] + Σ λ/(λ+α)`` and
  ``RSS = Σ ỹ² − Σ P² (λ + 2α)/(λ + α)²``: ``O(d_s·d_t)`` per α, no pass over
  the rows, so it works on streamed data. This is the classic GCV of Golub,
  Heath & Wahba — *not* what scikit-learn calls "gcv".
* ``select="loo"`` — exact leave-one-out, ``e_i = r_i / (1 − h_ii)``, which is
  what scikit-learn's ``RidgeCV`` (default ``cv=None``) computes: same scores,
  same α, same coefficients. Needs the rows (``n·d_s·d_t`` flops per α).
* ``select="kfold"`` — contiguous folds (``KFold(folds)`` without shuffling),
  mean held-out MSE; each fold's statistics are accumulated once and the
  training sets are formed with ``merge_stats``.

With ``alpha_per_target=True`` each target column picks its own α.
``lstsq()`` is the ``α = 0`` case: minimum-norm when ``X̃ᵀX̃`` is singular.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.mappers import (_base, _closed_form, _lapack, _ridge_selection, _stats,
                             _validate)

_SELECTIONS = ("gcv", "loo", "kfold")


class RidgeState(NamedTuple):
    """A fitted ridge map ``x @ weight + bias``.

    Attributes:
        weight: ``[d_s, d_t]``.
        bias: ``[d_t]``.
        alpha: ``[]`` the (chosen) penalty, or ``[d_t]`` per target.
        selection_scores: ``[n_alphas, d_t]`` per-target criterion (GCV, mean
            squared LOO error or mean held-out MSE; lower is better) for each α
            of the grid, or ``None`` for a fixed α.
    """

    weight: jax.Array
    bias: jax.Array
    alpha: jax.Array
    selection_scores: Optional[jax.Array] = None

    def affine_parts(self):
        return self.weight, self.bias


@jax.jit
def _cholesky_ridge(moments, alpha):
    """Weight and bias by Cholesky, and whether the factorisation held up."""
    gram = moments.xx + alpha * jnp.eye(moments.xx.shape[0], dtype=moments.xx.dtype)
    weight = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(gram), moments.xy)
    return weight, _closed_form.bias_for(moments, weight), jnp.isfinite(weight).all()


def fit_ridge_from_moments(moments: _stats.Moments, alpha: float) -> RidgeState:
    """Ridge for one α; Cholesky, or the eigen-solver where Cholesky breaks down.

    ``α = 0`` or a Gram too ill-conditioned for Cholesky in this dtype falls
    back to the eigen-solver (minimum-norm on null directions).
    """
    dtype_alpha = jnp.asarray(alpha, moments.xx.dtype)

    def eigen_solution():
        eigen = _closed_form.decompose_gram(moments.xx, moments.xy)
        weight = _closed_form.weight_from_eigen(eigen, alpha)
        return RidgeState(weight, _closed_form.bias_for(moments, weight), dtype_alpha)

    if alpha == 0:
        return eigen_solution()
    if not _validate.is_concrete(moments):
        # Traced: the failed-factorisation fallback is a lax.cond, never a NaN.
        weight, offset, factorised = _cholesky_ridge(moments, dtype_alpha)
        return jax.lax.cond(factorised, lambda: RidgeState(weight, offset, dtype_alpha),
                            eigen_solution)
    with _lapack.single_threaded():
        weight, offset, factorised = _cholesky_ridge(moments, dtype_alpha)
        factorised = bool(factorised)
    if factorised:
        return RidgeState(weight, offset, dtype_alpha)
    return eigen_solution()


@partial(jax.jit, static_argnames="per_target")
def _select_alpha(scores, alphas, per_target: bool):
    """First α with the lowest score (ties go to the earlier α, like sklearn)."""
    if per_target:
        return alphas[jnp.argmin(scores, axis=0)]
    return alphas[jnp.argmin(scores.mean(axis=1))]


def _state_for_selection(moments, eigen, alphas, scores, per_target):
    alpha = _select_alpha(scores, alphas, per_target)
    weight = _closed_form.weight_from_eigen(eigen, alpha)
    return RidgeState(weight, _closed_form.bias_for(moments, weight), alpha, scores)


def lstsq(*, fit_intercept: bool = True) -> _base.Mapper:
    """Ordinary least squares ``min ‖Y − XW − 1bᵀ‖²``; minimum-norm if rank-deficient.

    Solved on the Gram ``X̃ᵀX̃`` (so it streams), which squares the condition
    number: beyond ~1e3 in float32 or ~1e7 in float64 small directions are
    treated as null (minimum-norm); use ``ridge`` or float64 there.

    Args:
        fit_intercept: fit an unpenalised bias (centre the data).

    Returns:
        ``Mapper`` producing ``RidgeState`` with ``alpha = 0``.
    """
    return _closed_form.closed_form_mapper(
        lambda moments: fit_ridge_from_moments(moments, 0.0),
        fit_intercept=fit_intercept,
        check_moments=_interpolation_warning("lstsq()", fit_intercept))


def _interpolation_warning(solver: str, fit_intercept: bool):
    def check(moments):
        _validate.warn_if_interpolating(moments.count, moments.xx.shape[0],
                                        fit_intercept, solver)
    return check


def ridge(alpha: float | None = None, *, alphas: Sequence[float] | None = None,
          select: str = "gcv", folds: int = 5, alpha_per_target: bool = False,
          fit_intercept: bool = True) -> _base.Mapper:
    """Ridge regression with a fixed α or an α chosen from a grid.

    Args:
        alpha: fixed penalty (``ridge(1.0)``); exclusive with ``alphas``.
        alphas: grid of penalties to choose from, all solved from one
            eigendecomposition.
        select: ``"gcv"`` (classic GCV from statistics; streams), ``"loo"``
            (exact leave-one-out = sklearn ``RidgeCV``; needs rows) or
            ``"kfold"`` (``folds`` contiguous folds; ``fit_from_stats`` takes a
            list of per-fold statistics).
        folds: number of folds for ``"kfold"``.
        alpha_per_target: choose α per target column instead of one shared α.
        fit_intercept: fit an unpenalised bias.

    Returns:
        ``Mapper`` producing ``RidgeState``.

    Example::

        mapper = ridge(alphas=np.logspace(-2, 4, 10), select="gcv")
        state = mapper.fit(x_small, y_large)        # [n, d_s], [n, d_t]
        y_hat = mapper.apply(state, x_small)        # x @ linear(state) + bias(state)
    """
    if (alpha is None) == (alphas is None):
        raise ValueError("pass exactly one of alpha=... (fixed penalty) or"
                         " alphas=[...] (a grid to select from).")
    if alpha is not None:
        alpha = _validate.check_alpha(alpha)
        return _closed_form.closed_form_mapper(
            lambda moments: fit_ridge_from_moments(moments, alpha),
            fit_intercept=fit_intercept,
            check_moments=(_interpolation_warning(f"ridge({alpha:g})", fit_intercept)
                           if alpha == 0 else None))
    grid = np.asarray([_validate.check_alpha(a, "each of alphas") for a in alphas])
    if grid.size == 0:
        raise ValueError("alphas is empty; give at least one penalty.")
    if select not in _SELECTIONS:
        raise ValueError(f"select must be one of {_SELECTIONS}, got {select!r}.")
    if select == "kfold" and (not isinstance(folds, int) or folds < 2):
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}.")
    if select == "gcv":
        return _gcv_ridge(grid, alpha_per_target, fit_intercept)
    if select == "loo":
        return _loo_ridge(grid, alpha_per_target, fit_intercept)
    return _kfold_ridge(grid, folds, alpha_per_target, fit_intercept)


def _gcv_ridge(grid, per_target, fit_intercept) -> _base.Mapper:
    def solve(moments):
        alphas = jnp.asarray(grid, moments.xx.dtype)
        eigen = _closed_form.decompose_gram(moments.xx, moments.xy)
        scores = _ridge_selection.gcv_scores(eigen, moments, alphas, fit_intercept)
        return _state_for_selection(moments, eigen, alphas, scores, per_target)

    return _closed_form.closed_form_mapper(solve, fit_intercept=fit_intercept)


def _loo_ridge(grid, per_target, fit_intercept) -> _base.Mapper:
    def fit(x, y):
        x, y = _validate.check_paired(x, y)
        stats = _stats.statistics_of(x, y)
        moments = _stats.moments_from_stats(stats, centered=fit_intercept)
        alphas = jnp.asarray(grid, moments.xx.dtype)
        eigen = _lapack.run_decomposition(max(moments.xy.shape), _closed_form.decompose_gram,
                                          moments.xx, moments.xy)
        scores = _ridge_selection.loo_scores(x, y, moments, eigen, alphas,
                                             fit_intercept)
        return _state_for_selection(moments, eigen, alphas, scores, per_target)

    return _base.Mapper(fit, _base.apply_affine, None)


def _kfold_ridge(grid, folds, per_target, fit_intercept) -> _base.Mapper:
    def fit_from_stats(fold_stats):
        if isinstance(fold_stats, _stats.SufficientStats) or len(fold_stats) < 2:
            raise ValueError(
                "ridge(select='kfold').fit_from_stats needs a list of per-fold"
                " SufficientStats (at least 2), one accumulate_stats run per fold.")
        for stats in fold_stats:
            _stats.check_stats(stats)
        total = fold_stats[0]
        for stats in fold_stats[1:]:
            total = _stats.merge_stats(total, stats)
        moments = _stats.moments_from_stats(total, centered=fit_intercept)
        alphas = jnp.asarray(grid, moments.xx.dtype)
        dim = max(moments.xy.shape)
        scores = _lapack.run_decomposition(dim, _ridge_selection.kfold_scores, fold_stats, alphas,
                                           fit_intercept)
        eigen = _lapack.run_decomposition(dim, _closed_form.decompose_gram, moments.xx, moments.xy)
        return _state_for_selection(moments, eigen, alphas, scores, per_target)

    def fit(x, y):
        x, y = _validate.check_paired(x, y)
        if x.shape[0] < folds:
            raise ValueError(f"{folds}-fold selection needs n >= {folds} rows,"
                             f" got n={x.shape[0]}.")
        bounds = np.cumsum([0] + [len(part) for part in
                                  np.array_split(np.arange(x.shape[0]), folds)])
        return fit_from_stats([_stats.statistics_of(x[lo:hi], y[lo:hi])
                               for lo, hi in zip(bounds[:-1], bounds[1:])])

    return _base.Mapper(fit, _base.apply_affine, fit_from_stats)
