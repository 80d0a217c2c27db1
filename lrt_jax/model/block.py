"""One decoder layer (see :mod:`lrt_jax.model.decoder` for the data path and the parameter tree)."""

from __future__ import annotations

import flax.linen as nn
import jax

from lrt_jax.config import ModelConfig
from lrt_jax.model.attention import Attention
from lrt_jax.model.mlp import MLP, MoE
from lrt_jax.model.norms import Norm
from lrt_jax.model.sharding import constrain
from lrt_jax.model.tap import Tap


def constrain_residual(config: ModelConfig, x: jax.Array) -> jax.Array:
    """A residual-stream value ``[batch, seq, d_model]`` pinned by the activation rules (identity without a mesh)."""
    return constrain(config, x, "act_batch", "act_seq", "act_embed")


class Block(nn.Module):
    """One decoder layer; returns ``(resid_post [batch, seq, d_model], new_cache)``.

    ``index`` names the layer's sites (``layers.{index}.<kind>``) and picks its layer
    type (sliding or full attention); nothing else about a block depends on it.
    """

    config: ModelConfig
    index: int

    @nn.compact
    def __call__(self, x, positions, kv_mask, cache=None, cache_index=None):
        cfg, i = self.config, self.index

        def tap(kind, value):
            return Tap(f"layers.{i}.{kind}")(constrain_residual(cfg, value))

        x = tap("resid_pre", x)
        attn, new_cache = Attention(cfg, i, name="attn")(
            Norm(cfg, name="attn_norm")(x), positions, kv_mask, cache, cache_index
        )
        if cfg.post_attn_norm:
            attn = Norm(cfg, name="post_attn_norm")(attn)
        attn = tap("attn_out", attn)
        mid = tap("resid_mid", x + attn)

        mlp_in = Norm(cfg, name="mlp_norm")(x if cfg.parallel_residual else mid)
        if cfg.is_moe:
            mlp = MoE(cfg, i, name="moe")(mlp_in)
        else:
            mlp = MLP(cfg, cfg.d_ff, cfg.mlp_bias, layer_index=i, name="mlp")(mlp_in)
        if cfg.post_mlp_norm:
            mlp = Norm(cfg, name="post_mlp_norm")(mlp)
        mlp = tap("mlp_out", mlp)
        return tap("resid_post", mid + mlp), new_cache
