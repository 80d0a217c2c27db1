"""Multi-head attention with grouped KV heads, RoPE, soft-capping, sliding windows and a KV cache.

Shapes: ``x [batch, seq, d_model]``; queries ``[batch, seq, n_heads, head_dim]``; keys
and values ``[batch, slots, n_kv_heads, head_dim]``. Query head ``h`` reads KV head
``h // (n_heads // n_kv_heads)`` (MHA, GQA and MQA are the same code).

Masking works on *slots* — indices into the key/value sequence (the cache, or the
current sequence when there is no cache) — not on positions: a query in slot ``q``
sees key slot ``k`` when ``k ≤ q``, the key is a real token (``kv_mask``), and, on a
sliding layer, ``q − k < sliding_window``. Positions (what RoPE sees) come separately,
so left padding shifts slots but not positions.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig
from lrt_jax.model.norms import Norm
from lrt_jax.model.rope import apply_rope

INIT = nn.initializers.normal(stddev=0.02)


class LayerCache(NamedTuple):
    """Keys and values of one layer, ``[batch, max_slots, n_kv_heads, head_dim]`` each."""

    k: jax.Array
    v: jax.Array


def attention_mask(
    query_slots: jax.Array, key_slots: jax.Array, kv_mask: jax.Array, window: int | None
) -> jax.Array:
    """Boolean ``[batch, 1, q, k]`` mask from slot indices ``[q]``, ``[k]`` and ``kv_mask [batch, k]``."""
    causal = key_slots[None, :] <= query_slots[:, None]
    if window is not None:
        causal = causal & (query_slots[:, None] - key_slots[None, :] < window)
    return causal[None, None] & kv_mask[:, None, None, :]


class Attention(nn.Module):
    """Self-attention of one layer; returns ``(out [batch, seq, d_model], new_cache)``."""

    config: ModelConfig
    layer_index: int

    def project(self, name: str, x: jax.Array, heads: int, bias: bool) -> jax.Array:
        cfg = self.config
        y = nn.Dense(heads * cfg.head_dim, use_bias=bias, kernel_init=INIT, name=name)(x)
        if cfg.qk_norm == "full" and name in ("q_proj", "k_proj"):
            y = Norm(cfg, heads * cfg.head_dim, name=name[0] + "_norm")(y)
        y = y.reshape(*x.shape[:2], heads, cfg.head_dim)
        if cfg.qk_norm == "head" and name in ("q_proj", "k_proj"):
            y = Norm(cfg, cfg.head_dim, name=name[0] + "_norm")(y)
        return y

    @nn.compact
    def __call__(self, x, positions, kv_mask, cache: LayerCache | None = None, cache_index=None):
        cfg = self.config
        batch, seq, _ = x.shape
        q = self.project("q_proj", x, cfg.n_heads, cfg.qkv_bias)
        k = self.project("k_proj", x, cfg.n_kv_heads, cfg.qkv_bias)
        v = self.project("v_proj", x, cfg.n_kv_heads, cfg.qkv_bias)
        if cfg.position_embedding == "rope":
            q, k = apply_rope(q, positions, cfg), apply_rope(k, positions, cfg)

        if cache is None:
            query_slots = jnp.arange(seq)
            new_cache = None
        else:
            k = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), (0, cache_index, 0, 0))
            v = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), (0, cache_index, 0, 0))
            query_slots = cache_index + jnp.arange(seq)
            new_cache = LayerCache(k, v)
        key_slots = jnp.arange(k.shape[1])
        window = cfg.sliding_window if cfg.layer_type(self.layer_index) == "sliding" else None
        mask = attention_mask(query_slots, key_slots, kv_mask, window)

        groups = cfg.n_heads // cfg.n_kv_heads
        q = q.reshape(batch, seq, cfg.n_kv_heads, groups, cfg.head_dim)
        scale = cfg.query_scale if cfg.query_scale is not None else cfg.head_dim**-0.5
        scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k, preferred_element_type=jnp.float32) * scale
        if cfg.attn_logit_softcap is not None:
            scores = jnp.tanh(scores / cfg.attn_logit_softcap) * cfg.attn_logit_softcap
        # A finite fill keeps fully-masked rows (padding queries) free of NaN.
        scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bkgqs,bskd->bqkgd", probs, v).reshape(batch, seq, cfg.n_heads * cfg.head_dim)
        out = nn.Dense(cfg.d_model, use_bias=cfg.out_bias, kernel_init=INIT, name="o_proj")(out)
        return out, new_cache
