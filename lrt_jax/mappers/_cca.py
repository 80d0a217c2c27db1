"""Canonical correlation analysis as a map: regress y on the top-k canonical variates.

With covariances ``Cxx = X̃ᵀX̃/n + αI``, ``Cyy = ỸᵀỸ/n + αI``, ``Cxy = X̃ᵀỸ/n``
(``α`` regularises; ``α = 0`` needs ``n > max(d_s, d_t)``), the SVD

    Cxx^{-1/2} Cxy Cyy^{-1/2} = U diag(ρ) Vᵀ

gives canonical directions ``A = Cxx^{-1/2} U_k`` ``[d_s, k]`` and
``B = Cyy^{-1/2} V_k`` ``[d_t, k]`` with correlations ``ρ_1 ≥ … ≥ ρ_k``; the
variates ``u = (x − x̄) A`` are white and uncorrelated. As a mapper, ``y`` is
predicted by least squares on ``u``::

    ŷ = ȳ + (x − x̄) A Aᵀ Cxy        (linear part A Aᵀ Cxy, rank k).

Signs follow the convention that the largest-magnitude entry of each column
of ``A`` is positive (canonical pairs are defined up to a joint sign).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _base, _closed_form, _validate

_HIGHEST = jax.lax.Precision.HIGHEST


class CCAState(NamedTuple):
    """A fitted CCA map.

    Attributes:
        weight: ``[d_s, d_t]`` ``A Aᵀ Cxy``.
        bias: ``[d_t]``.
        x_weights: ``[d_s, k]`` canonical directions A of the source.
        y_weights: ``[d_t, k]`` canonical directions B of the target.
        correlations: ``[k]`` canonical correlations ρ (descending).
        mean_x: ``[d_s]`` (variates are ``(x − mean_x) @ x_weights``).
        mean_y: ``[d_t]``.
    """

    weight: jax.Array
    bias: jax.Array
    x_weights: jax.Array
    y_weights: jax.Array
    correlations: jax.Array
    mean_x: jax.Array
    mean_y: jax.Array

    def affine_parts(self):
        return self.weight, self.bias


def _inverse_sqrt(covariance):
    """``C^{-1/2}`` on the range of C (null directions dropped, never NaN)."""
    values, vectors = jnp.linalg.eigh(covariance)
    cutoff = covariance.shape[0] * jnp.finfo(covariance.dtype).eps * values[-1]
    keep = values > cutoff
    inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, values, 1.0)), 0.0)
    return jnp.matmul(vectors * inv_sqrt[None, :], vectors.T, precision=_HIGHEST)


@partial(jax.jit, static_argnames="k")
def _cca_from_moments(moments, alpha, k: int):
    dot = partial(jnp.matmul, precision=_HIGHEST)
    n = moments.count
    cxx = moments.xx / n + alpha * jnp.eye(moments.xx.shape[0], dtype=n.dtype)
    cyy = moments.yy / n + alpha * jnp.eye(moments.yy.shape[0], dtype=n.dtype)
    cxy = moments.xy / n
    kx, ky = _inverse_sqrt(cxx), _inverse_sqrt(cyy)
    u, correlations, vt = jnp.linalg.svd(dot(dot(kx, cxy), ky), full_matrices=False)
    x_weights, y_weights = dot(kx, u[:, :k]), dot(ky, vt[:k].T)
    peak = jnp.take_along_axis(x_weights, jnp.abs(x_weights).argmax(0)[None], 0)
    sign = jnp.where(peak < 0, -1.0, 1.0).astype(n.dtype)
    x_weights, y_weights = x_weights * sign, y_weights * sign
    weight = dot(x_weights, dot(x_weights.T, cxy))
    return CCAState(weight, _closed_form.bias_for(moments, weight), x_weights,
                    y_weights, correlations[:k], moments.mean_x, moments.mean_y)


def cca(k: int, alpha: float = 0.0) -> _base.Mapper:
    """CCA map through the top ``k`` canonical pairs.

    Args:
        k: number of canonical pairs, ``1 ≤ k ≤ min(d_s, d_t)``.
        alpha: ridge added to both covariance diagonals (regularised CCA).

    Returns:
        ``Mapper`` producing ``CCAState``. Its statistics need the full target
        Gram: ``init_stats(d_s, d_t, target_gram=True)``.
    """
    alpha = _validate.check_alpha(alpha)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")

    def check(moments):
        d_s, d_t = moments.xy.shape
        _validate.check_rank(k, d_s, d_t, "k")
        if alpha == 0:
            _validate.check_enough_rows(moments.count, max(d_s, d_t), "cca")

    return _closed_form.closed_form_mapper(
        lambda moments: _cca_from_moments(moments, alpha, k), fit_intercept=True,
        target_gram=True, check_moments=check)
