"""Read and write directions move through a map differently.

A map ``h_T ≈ h_S W + b`` (row vectors, ``W = mappers.linear(state)`` ``[d_s, d_t]``)
carries two kinds of direction, and they transform by different rules:

* A **write** direction — a steering vector ``v`` *added* to ``h_S`` — moves with the
  map's linear part: ``(h_S + v) W + b = h_T + v W``, so ``v_T = v W``
  (:func:`~lrt_jax.steering.transfer_vector`).
* A **read** direction — a probe ``w`` *dotted* with ``h_S``, score ``h_S·w + c`` — must
  give the same score on the target: ``h_T·w_T + c_T = h_S W w_T + b·w_T + c_T``, which
  equals ``h_S·w + c`` when ``W w_T = w`` and ``c_T = c − b·w_T``. The minimum-norm
  solution is ``w_T = W⁺ w`` (``W⁺ = pinv(W)``, ``[d_t, d_s]``): the read direction
  moves through the pseudo-inverse transpose of the write rule (:func:`transfer_probe`).

The two rules agree only when ``W`` is orthogonal (e.g. ``procrustes()`` without scale),
since then ``W⁺ = Wᵀ``. With ``d_t > d_s``, ``W w_T = w`` has many solutions and the
pseudo-inverse picks the one that puts no weight on target directions the map never
reaches. Everything here is traceable (``jit``/``vmap``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from lrt_jax.steering._probe import ProbeResult
from lrt_jax.steering._transfer import _linear_and_bias

__all__ = ["TransferredProbe", "transfer_probe"]


class TransferredProbe(NamedTuple):
    """A probe for the target model: ``score = h_T @ weights + bias`` (logit of label 1)."""

    weights: jnp.ndarray
    bias: jnp.ndarray


def transfer_probe(probe, map_state, *, bias=0.0, rtol=None) -> TransferredProbe:
    """Carry a read direction (probe) from the source to the target space of ``map_state``.

    Args:
      probe: a :class:`~lrt_jax.steering.ProbeResult` (its weights and bias are used), or
        source weights ``[d_s]`` with ``bias=`` their intercept.
      map_state: the map, as for :func:`~lrt_jax.steering.transfer_vector` (a mapper
        state, a loaded map, or an explicit ``(W, b)`` pair).
      bias: the source intercept when ``probe`` is an array.
      rtol: relative cutoff of small singular values of ``W`` in the pseudo-inverse
        (``jnp.linalg.pinv``'s default when ``None``).

    Returns:
      :class:`TransferredProbe` ``(W⁺ w, c − b·W⁺ w)``, so that on mapped activations
      ``h_T @ weights + bias`` equals the source score (module docstring).
    """
    if isinstance(probe, ProbeResult):
        weights, bias = probe.weights, probe.bias
    else:
        weights = probe
    weights = jnp.asarray(weights)
    linear, offset = _linear_and_bias(map_state)
    if weights.ndim != 1 or weights.shape[0] != linear.shape[0]:
        raise ValueError(f"the probe has shape {tuple(weights.shape)} but the map reads width {linear.shape[0]}; "
                         "a probe is a [d_source] vector of the map's source space.")
    target_weights = jnp.linalg.pinv(linear, rtol=rtol) @ weights.astype(linear.dtype)
    return TransferredProbe(target_weights, jnp.asarray(bias, linear.dtype) - offset @ target_weights)
