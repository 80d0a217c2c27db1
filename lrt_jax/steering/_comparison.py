"""Comparing native and transferred steering vectors by their effect (LRT paper, Table 1).

A steering sweep yields a propensity per item at each strength α: the arrays here
are ``[n_alphas, n_items]``, row ``a`` holding every item's propensity at
``alphas[a]``. A transferred vector is good when, at each α, it moves the same
items as the native vector (high Pearson correlation across items) by the same
amount (low mean squared error), and when it is as steerable (same slope of
propensity against α).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from lrt_jax.steering._checks import check_activations, check_rank


def _check_propensities(name: str, propensities, n_alphas: int | None = None) -> None:
    check_activations(name, propensities, rank=2, layout="[n_alphas, n_items]")
    if n_alphas is not None and np.shape(propensities)[0] != n_alphas:
        raise ValueError(f"{name} has {np.shape(propensities)[0]} rows for {n_alphas} alphas; use one row per alpha.")


def _check_pair(native, transferred) -> None:
    _check_propensities("native", native)
    _check_propensities("transferred", transferred)
    if np.shape(native) != np.shape(transferred):
        raise ValueError(
            f"native {np.shape(native)} and transferred {np.shape(transferred)} propensities must have "
            "the same [n_alphas, n_items] shape: score both vectors on the same items and alphas."
        )


def pearson_per_alpha(native, transferred) -> jnp.ndarray:
    """Pearson correlation across items at each α.

    Args:
      native: ``[n_alphas, n_items]`` propensities under the native vector.
      transferred: ``[n_alphas, n_items]`` propensities under the transferred vector.

    Returns:
      ``[n_alphas]``; NaN where either row is constant (correlation undefined).
    """
    _check_pair(native, transferred)
    native_centered = jnp.asarray(native) - jnp.mean(native, axis=1, keepdims=True)
    transferred_centered = jnp.asarray(transferred) - jnp.mean(transferred, axis=1, keepdims=True)
    covariance = jnp.sum(native_centered * transferred_centered, axis=1)
    scale = jnp.sqrt(jnp.sum(native_centered**2, axis=1) * jnp.sum(transferred_centered**2, axis=1))
    return jnp.where(scale > 0, covariance / jnp.where(scale > 0, scale, 1.0), jnp.nan)


def mse_per_alpha(native, transferred) -> jnp.ndarray:
    """Mean squared difference of propensities across items at each α: ``[n_alphas]``."""
    _check_pair(native, transferred)
    return jnp.mean((jnp.asarray(native) - jnp.asarray(transferred)) ** 2, axis=1)


class SteerabilitySlope(NamedTuple):
    """Least-squares slopes of propensity against α.

    Attributes:
      mean_slope: scalar slope of the across-item mean propensity; equals the mean
        of ``item_slopes`` because least squares is linear in the responses.
      item_slopes: ``[n_items]`` slope for each item.
    """

    mean_slope: jnp.ndarray
    item_slopes: jnp.ndarray


def steerability_slope(alphas, propensities) -> SteerabilitySlope:
    """Fit ``propensity ≈ intercept + slope · α`` by least squares, overall and per item.

    Args:
      alphas: ``[n_alphas]`` steering strengths, at least two distinct values.
      propensities: ``[n_alphas, n_items]``.

    Returns:
      A :class:`SteerabilitySlope`.
    """
    check_rank("alphas", alphas, 1, "[n_alphas]")
    _check_propensities("propensities", propensities, n_alphas=np.shape(alphas)[0])
    alphas_centered = jnp.asarray(alphas) - jnp.mean(alphas)
    spread = jnp.sum(alphas_centered**2)
    if not spread > 0:
        raise ValueError("alphas must contain at least two distinct values to define a slope.")
    item_slopes = alphas_centered @ jnp.asarray(propensities) / spread
    return SteerabilitySlope(jnp.mean(item_slopes), item_slopes)


class PropensityComparison(NamedTuple):
    """Native versus transferred vector, per α and overall (see :func:`compare_propensities`)."""

    pearson: jnp.ndarray
    mse: jnp.ndarray
    native_slope: SteerabilitySlope
    transferred_slope: SteerabilitySlope


def compare_propensities(alphas, native, transferred) -> PropensityComparison:
    """Per-α Pearson correlation and MSE, and both vectors' steerability slopes.

    Args:
      alphas: ``[n_alphas]`` steering strengths.
      native: ``[n_alphas, n_items]`` propensities under the native vector.
      transferred: ``[n_alphas, n_items]`` propensities under the transferred vector
        (or a control: a random or unmapped vector).

    Returns:
      A :class:`PropensityComparison`.
    """
    return PropensityComparison(
        pearson=pearson_per_alpha(native, transferred),
        mse=mse_per_alpha(native, transferred),
        native_slope=steerability_slope(alphas, native),
        transferred_slope=steerability_slope(alphas, transferred),
    )
