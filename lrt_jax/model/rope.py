"""Rotary position embeddings (RoPE), with partial rotation and frequency scaling.

Convention (HF "rotate half"): the first ``rotary_dim`` dimensions of each head are
split into two halves ``(x₁, x₂)`` and rotated as ``(x₁ cos − x₂ sin, x₂ cos + x₁ sin)``
with frequency ``θ^(−2j / rotary_dim)`` for pair ``j``; the remaining dimensions pass
through unchanged (gpt_neox ``rotary_pct``). Angles are computed in float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.config import ModelConfig, RopeScaling


def rope_inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """Inverse frequencies ``[rotary_dim // 2]`` (float64 NumPy, a compile-time constant)."""
    dim = config.rotary_dim
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    return scale_inverse_frequencies(inv_freq, config.rope_scaling)


def scale_inverse_frequencies(inv_freq: np.ndarray, scaling: RopeScaling) -> np.ndarray:
    """Apply ``linear`` or ``llama3`` frequency scaling (identity for ``default``)."""
    if scaling.kind == "default":
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    # Llama 3.1: keep high frequencies, divide low ones by `factor`, interpolate between.
    old_len = scaling.original_max_position_embeddings
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(is_medium, smoothed, scaled)


def apply_rope(x: jax.Array, positions: jax.Array, config: ModelConfig) -> jax.Array:
    """Rotate ``x [batch, seq, heads, head_dim]`` by ``positions [batch, seq]``."""
    dim = config.rotary_dim
    if dim == 0:
        return x
    inv_freq = jnp.asarray(rope_inverse_frequencies(config), jnp.float32)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq[None, None]  # [batch, seq, dim/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    rot, rest = x[..., :dim].astype(jnp.float32), x[..., dim:]
    half = dim // 2
    rotated_half = jnp.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
    rotated = (rot * cos + rotated_half * sin).astype(x.dtype)
    return jnp.concatenate([rotated, rest], axis=-1) if rest.shape[-1] else rotated
