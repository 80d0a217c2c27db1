"""Normalisation layers, computed in float32 whatever the parameter dtype.

``RMSNorm``: ``x / sqrt(mean(x²) + eps) · (offset + scale)``;
``LayerNorm``: ``(x − mean) / sqrt(var + eps) · scale + bias``.
Gemma stores RMSNorm weights relative to one (``offset = 1``), every other family
stores them directly (``offset = 0``); the offset is a config flag, not a family branch.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig
from lrt_jax._broadcast import lift


class Norm(nn.Module):
    """RMS or Layer norm over the last axis, as the config says.

    Attributes:
      config: model config (``norm_type``, ``norm_eps``, ``norm_offset``, ``norm_bias``).
      width: size of the normalised axis (``d_model`` by default; head_dim for QK-norm).
    """

    config: ModelConfig
    width: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        width = self.width or cfg.d_model
        scale_init = nn.initializers.zeros if cfg.norm_offset else nn.initializers.ones
        scale = self.param("scale", scale_init, (width,), jnp.float32)
        x32 = x.astype(jnp.float32)
        if cfg.norm_type == "rms":
            normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + cfg.norm_eps)
        else:
            centred = x32 - jnp.mean(x32, axis=-1, keepdims=True)
            normed = centred * jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + cfg.norm_eps)
        out = normed * lift(cfg.norm_offset + scale.astype(jnp.float32), normed)
        if cfg.norm_bias:
            out = out + lift(self.param("bias", nn.initializers.zeros, (width,), jnp.float32), out)
        return out.astype(x.dtype)
