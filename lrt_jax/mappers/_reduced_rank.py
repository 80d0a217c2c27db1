"""Reduced-rank ridge regression: the best rank-r map under a ridge penalty.

Fit ridge ``B = (X̃ᵀX̃ + αI)⁻¹X̃ᵀỸ``, then project it on the top-r right
singular vectors ``V_r`` of the fitted values ``X̃B`` (Izenman 1975;
Mukherjee & Zhu 2011 with ``α > 0``)::

    W = B V_r V_rᵀ,        b = ȳ − x̄ W,        rank(W) ≤ r.

``X̃B`` is never formed: with ``X̃ᵀX̃ = Q diag(λ) Qᵀ`` and ``B = Q diag(s) P``,
``(X̃B)ᵀ(X̃B) = FᵀF`` for ``F = diag(√λ · s) P`` ``[d_s, d_t]``, so ``V_r`` comes
from the thin SVD of F — no ``d_t × d_t`` eigenproblem and no pass over rows.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _base, _closed_form, _validate

_HIGHEST = jax.lax.Precision.HIGHEST


class ReducedRankState(NamedTuple):
    """A rank-r affine map.

    Attributes:
        weight: ``[d_s, d_t]`` of rank ≤ r.
        bias: ``[d_t]``.
        target_components: ``[d_t, r]`` orthonormal ``V_r``: the target
            subspace the map writes into.
    """

    weight: jax.Array
    bias: jax.Array
    target_components: jax.Array

    def affine_parts(self):
        return self.weight, self.bias


@partial(jax.jit, static_argnames="rank")
def _reduced_rank_from_moments(moments, alpha, rank: int):
    eigen = _closed_form.decompose_gram(moments.xx, moments.xy)
    s = _closed_form.shrinkage(eigen, alpha)
    ridge_weight = jnp.matmul(eigen.vectors, eigen.projections * s[:, None],
                              precision=_HIGHEST)
    fitted_factor = eigen.projections * (jnp.sqrt(eigen.values) * s)[:, None]
    components = jnp.linalg.svd(fitted_factor, full_matrices=False)[2][:rank].T
    weight = jnp.matmul(jnp.matmul(ridge_weight, components, precision=_HIGHEST),
                        components.T, precision=_HIGHEST)
    return ReducedRankState(weight, _closed_form.bias_for(moments, weight), components)


def reduced_rank(rank: int, alpha: float = 0.0, *,
                 fit_intercept: bool = True) -> _base.Mapper:
    """Reduced-rank (ridge) regression of rank ``rank``.

    Args:
        rank: ``1 ≤ rank ≤ min(d_s, d_t)`` (checked at fit time).
        alpha: ridge penalty ``≥ 0`` (0: minimum-norm least squares).
        fit_intercept: fit an unpenalised bias.

    Returns:
        ``Mapper`` producing ``ReducedRankState``.
    """
    alpha = _validate.check_alpha(alpha)
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}.")

    def check(moments):
        _validate.check_rank(rank, moments.xy.shape[0], moments.xy.shape[1], "rank")

    return _closed_form.closed_form_mapper(
        lambda moments: _reduced_rank_from_moments(moments, alpha, rank),
        fit_intercept=fit_intercept, check_moments=check)
