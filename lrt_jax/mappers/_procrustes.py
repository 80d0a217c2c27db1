"""Orthogonal Procrustes: the best rotation (optionally scaled) between spaces.

    R = argmin ‖X̃ R − Ỹ‖_F  subject to  R Rᵀ = I   (R Rᵀ = I_{d_s} if d_s ≤ d_t)

is ``R = U Vᵀ`` from the thin SVD ``X̃ᵀỸ = U diag(σ) Vᵀ`` (Schönemann 1966).
When ``d_s ≠ d_t`` R is *semi-orthogonal* ``[d_s, d_t]``: it maps the source
isometrically into a ``min(d_s, d_t)``-dimensional subspace of the target
(or projects onto one). ``scale=True`` also fits the scalar
``c = Σσ / ‖X̃‖²_F`` of ``min ‖c X̃ R − Ỹ‖``. Data are centred
(``fit_intercept``), so the map is ``x ↦ c (x − x̄) R + ȳ``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _base, _closed_form


@partial(jax.jit, static_argnames="scale")
def _procrustes_from_moments(moments, scale: bool):
    u, singular_values, vt = jnp.linalg.svd(moments.xy, full_matrices=False)
    rotation = jnp.matmul(u, vt, precision=jax.lax.Precision.HIGHEST)
    if scale:
        rotation = rotation * (singular_values.sum() / jnp.trace(moments.xx))
    return _base.AffineState(rotation, _closed_form.bias_for(moments, rotation))


def procrustes(scale: bool = False, *, fit_intercept: bool = True) -> _base.Mapper:
    """Orthogonal (or semi-orthogonal when ``d_s ≠ d_t``) Procrustes map.

    Args:
        scale: also fit one global scale factor.
        fit_intercept: centre both sides and fit a bias.

    Returns:
        ``Mapper`` producing ``AffineState`` (the scale is folded into ``weight``).
    """
    return _closed_form.closed_form_mapper(
        lambda moments: _procrustes_from_moments(moments, scale),
        fit_intercept=fit_intercept)
