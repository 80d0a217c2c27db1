"""Pre-transforms of the source: ``center``, ``standardize``, ``pca(k)``, ``whiten``.

Each is a ``Mapper`` that ignores ``y`` (``fit(x, y=None)``) and maps
``x [n, d_s] ↦ (x − μ) M`` for some matrix ``M`` ``[d_s, d_k]``, so every
pre-transform state is affine and ``chain(pca(64), ridge(1.0))`` still has a
``linear``/``bias`` in the original coordinates. They also fit from streamed
statistics (only the ``x`` parts are used). Covariances use ``1/n``
(population), like scikit-learn's ``StandardScaler``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lrt_jax.mappers import _base, _stats, _validate
from lrt_jax._broadcast import lift, widest_float

_HIGHEST = jax.lax.Precision.HIGHEST


class ScalingState(NamedTuple):
    """``x ↦ (x − mean) * scale`` (``center``: scale 1; ``standardize``: 1/σ).

    Attributes:
        mean: ``[d_s]``.
        scale: ``[d_s]``.
        variances: ``[d_s]`` per-coordinate variance σ².
    """

    mean: jax.Array
    scale: jax.Array
    variances: jax.Array

    def affine_parts(self):
        return jnp.diag(self.scale), -self.mean * self.scale


def _apply_scaling(state: ScalingState, x):
    _validate.check_width(x, state.mean.shape[-1], "pre-transform")
    wide = _base.upcast_input(x)
    wide = wide.astype(widest_float(wide, state.mean))
    out = (wide - lift(state.mean.astype(wide.dtype), wide)) * lift(state.scale.astype(wide.dtype), wide)
    return _base.in_input_dtype(out, x)


class LinearTransformState(NamedTuple):
    """``x ↦ (x − mean) @ matrix``.

    Attributes:
        mean: ``[d_s]``.
        matrix: ``[d_s, d_k]``: the top-k principal axes (``pca``) or
            ``Σ^{-1/2}`` (``whiten``).
        variances: ``[d_k]`` PCA eigenvalues (``pca``) or all covariance
            eigenvalues, ascending (``whiten``).
    """

    mean: jax.Array
    matrix: jax.Array
    variances: jax.Array

    def affine_parts(self):
        return self.matrix, -jnp.matmul(self.mean, self.matrix, precision=_HIGHEST)


def _apply_transform(state: LinearTransformState, x):
    _validate.check_width(x, state.matrix.shape[0], "pre-transform")
    wide = _base.upcast_input(x)
    wide = wide.astype(widest_float(wide, state.matrix))
    centred = wide - lift(state.mean.astype(wide.dtype), wide)
    return _base.in_input_dtype(jnp.matmul(centred, state.matrix.astype(wide.dtype), precision=_HIGHEST), x)


def _source_moments(x):
    x = _validate.as_float_matrix(x, "x")
    stats = _stats.statistics_of(x, x[:, :0])
    return _stats.moments_from_stats(stats, centered=True)


def _transform_mapper(from_moments, apply=_apply_transform,
                      fit_rows=None) -> _base.Mapper:
    """``Mapper`` from ``from_moments(moments) -> state``; ``fit_rows(x)`` may
    replace the Gram-based fit when the transform needs only per-column moments."""

    def fit(x, y=None):
        if fit_rows is not None:
            return fit_rows(_validate.as_float_matrix(x, "x"))
        return from_moments(_source_moments(x))

    def fit_from_stats(stats):
        _stats.check_stats(stats)
        return from_moments(_stats.moments_from_stats(stats, centered=True))

    return _base.Mapper(fit, apply, fit_from_stats)


@partial(jax.jit, static_argnames="standardize")
def _scaling(mean, variances, standardize: bool):
    std = jnp.sqrt(variances)
    scale = jnp.where(std > 0, 1.0 / jnp.where(std > 0, std, 1.0), 1.0)
    if not standardize:
        scale = jnp.ones_like(scale)
    return ScalingState(mean, scale, variances)


def _scaling_mapper(standardize: bool) -> _base.Mapper:
    def from_moments(moments):
        return _scaling(moments.mean_x, jnp.diag(moments.xx) / moments.count,
                        standardize)

    def fit_rows(x):
        # Per-column moments only: an n·d_s² Gram would be wasted work here.
        state = _scaling(x.mean(0), x.var(0), standardize)
        finite = jnp.isfinite(state.variances).all()
        if not _validate.is_concrete(finite):
            _validate.traced_check(finite, _validate.NONFINITE_TRACED)
        elif not bool(finite):
            _validate.raise_for_nonfinite_rows(x, None)
        return state

    return _transform_mapper(from_moments, _apply_scaling, fit_rows)


def center() -> _base.Mapper:
    """Subtract the source mean: ``x ↦ x − x̄``."""
    return _scaling_mapper(standardize=False)


def standardize() -> _base.Mapper:
    """Zero mean, unit variance per coordinate; constant coordinates are only centred."""
    return _scaling_mapper(standardize=True)


@partial(jax.jit, static_argnames="k")
def _principal_axes(moments, k: int):
    values, vectors = jnp.linalg.eigh(moments.xx / moments.count)
    values, vectors = jnp.maximum(values[::-1][:k], 0.0), vectors[:, ::-1][:, :k]
    peak = jnp.take_along_axis(vectors, jnp.abs(vectors).argmax(0)[None], 0)
    return LinearTransformState(moments.mean_x, vectors * jnp.sign(peak), values)


def pca(k: int) -> _base.Mapper:
    """Project on the top-``k`` principal axes: ``x ↦ (x − x̄) V_k`` ``[n, k]``.

    Axis signs: the largest-magnitude loading of each axis is positive
    (sklearn's ``svd_flip`` convention on the components).
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")

    def from_moments(moments):
        d = moments.xx.shape[0]
        if k > d:
            raise ValueError(f"pca(k={k}) needs k <= d_s = {d}; choose a smaller k.")
        return _principal_axes(moments, k)

    return _transform_mapper(from_moments)


@jax.jit
def _zca(moments, epsilon):
    values, vectors = jnp.linalg.eigh(moments.xx / moments.count)
    values = jnp.maximum(values, 0.0)
    floor = epsilon * jnp.mean(values)
    cutoff = values.shape[0] * jnp.finfo(values.dtype).eps * values[-1]
    keep = values + floor > cutoff
    inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, values + floor, 1.0)), 0.0)
    matrix = jnp.matmul(vectors * inv_sqrt[None, :], vectors.T, precision=_HIGHEST)
    return LinearTransformState(moments.mean_x, matrix, values)


def whiten(epsilon: float = 1e-6) -> _base.Mapper:
    """ZCA whitening ``x ↦ (x − x̄) Σ^{-1/2}``: identity covariance, minimal rotation.

    Args:
        epsilon: added to the covariance eigenvalues, relative to their mean,
            so near-null directions are not blown up; with ``epsilon=0`` null
            directions (rank deficiency, ``n ≤ d``) are dropped instead.
    """
    epsilon = _validate.check_alpha(epsilon, "epsilon")
    return _transform_mapper(lambda moments: _zca(moments, epsilon))
