"""Multi-head attention with grouped KV heads, RoPE, soft-capping, sliding windows and a KV cache.

Shapes: ``x [batch, seq, d_model]``; queries ``[batch, seq, n_heads, head_dim]``; keys
and values ``[batch, slots, n_kv_heads, head_dim]``. Query head ``h`` reads KV head
``h // (n_heads // n_kv_heads)`` (MHA, GQA and MQA are the same code).

Masking works on *slots* — indices into the key/value sequence (the cache, or the
current sequence when there is no cache) — not on positions: a query in slot ``q``
sees key slot ``k`` when ``k ≤ q``, the key is a real token (``kv_mask``), and, on a
sliding layer, ``q − k < sliding_window``. Positions (what RoPE sees) come separately,
so left padding shifts slots but not positions.

How the softmax is computed is ``config.execution.attention`` (see
:mod:`lrt_jax.model._attention_kernels`); :func:`attention_path` resolves ``"auto"``:
the materialised scores when the keys fit in one ``attention_block`` (tiny models
compute exactly as they always did), else splash on TPU, ``jax.nn.dot_product_attention``
on GPU when it covers the config, else the blockwise online softmax. A path that
cannot compute a call falls back to blockwise for that call: ``dot_product`` under
soft-capping, ``splash`` on a cached call (a decode step) or a sequence that is not
whole blocks of 128.

Sites (see :mod:`lrt_jax.sites`): ``layers.{i}.attn.q`` ``[b, t, n_heads, head_dim]``
and ``.k`` / ``.v`` ``[b, t, n_kv_heads, head_dim]`` after RoPE (the new tokens'
keys, before they are written to the cache); ``.z`` ``[b, t, n_heads, head_dim]``, the
per-head outputs that ``o_proj`` reads; ``.pattern`` ``[b, n_heads, q, slots]``, the
probabilities after softmax. The pattern exists only as the materialised tensor, so
its tap receives the materialised probabilities on every path: when nothing rewrites
them (the tap returns the very array it got), the output comes from the configured
path and XLA drops the probabilities unless a capture reads them — requesting other
sites leaves the program unchanged; when a hook rewrites them, the layer's output is
``pattern · v`` from the rewritten values. Either way a requested pattern costs that
layer the materialised ``[b, heads, q, slots]`` memory, and only that layer.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig
from lrt_jax.model._attention_kernels import (apply_probs, attention_mask, blockwise_attention,
                                              dot_product_attention, dot_product_covers, materialized_probs)
from lrt_jax.model._splash import splash_attention, splash_covers
from lrt_jax.model.norms import Norm
from lrt_jax.model.rope import apply_rope
from lrt_jax.model.sharding import constrain
from lrt_jax.model.tap import Tap

__all__ = ["Attention", "LayerCache", "attention_mask", "attention_path"]

INIT = nn.initializers.normal(stddev=0.02)
ATTENTION_PATHS = ("auto", "materialized", "blockwise", "dot_product", "splash")


class LayerCache(NamedTuple):
    """Keys and values of one layer, ``[batch, max_slots, n_kv_heads, head_dim]`` each."""

    k: jax.Array
    v: jax.Array


def target_platform(config: ModelConfig) -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: the mesh's devices (also deviceless ones), else the default backend."""
    mesh = config.execution.mesh
    return mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()


def attention_path(config: ModelConfig, queries: int, keys: int, cached: bool) -> str:
    """The path that computes a call with ``queries`` query and ``keys`` key slots (see the module docstring)."""
    path = config.execution.attention
    if path not in ATTENTION_PATHS:
        raise ValueError(f"Execution.attention={path!r} is unknown; choose one of {', '.join(ATTENTION_PATHS)}.")
    if path == "auto":
        if keys <= config.execution.attention_block:
            return "materialized"
        platform = target_platform(config)
        path = {"tpu": "splash", "gpu": "dot_product"}.get(platform, "blockwise")
    if path == "dot_product" and not dot_product_covers(config):
        return "blockwise"
    if path == "splash" and (cached or queries != keys or not splash_covers(config, keys)):
        return "blockwise"
    return path


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

    def tap(self, kind: str, x: jax.Array, heads_axis: str) -> jax.Array:
        x = constrain(self.config, x, "act_batch", "act_seq", heads_axis, None)
        return Tap(f"layers.{self.layer_index}.attn.{kind}")(x)

    @nn.compact
    def __call__(self, x, positions, kv_mask, cache: LayerCache | None = None, cache_index=None):
        cfg = self.config
        batch, seq, _ = x.shape
        q = self.project("q_proj", x, cfg.n_heads, cfg.qkv_bias)
        k = self.project("k_proj", x, cfg.n_kv_heads, cfg.qkv_bias)
        v = self.project("v_proj", x, cfg.n_kv_heads, cfg.qkv_bias)
        if cfg.position_embedding == "rope":
            q, k = apply_rope(q, positions, cfg), apply_rope(k, positions, cfg)
        q, k, v = self.tap("q", q, "act_heads"), self.tap("k", k, "act_kv_heads"), self.tap("v", v, "act_kv_heads")

        if cache is None:
            query_slots = jnp.arange(seq)
            new_cache = None
        else:
            k = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), (0, cache_index, 0, 0))
            v = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), (0, cache_index, 0, 0))
            query_slots = cache_index + jnp.arange(seq)
            new_cache = LayerCache(k, v)
        window = cfg.sliding_window if cfg.layer_type(self.layer_index) == "sliding" else None
        path = attention_path(cfg, seq, k.shape[1], cached=cache is not None)

        mask = attention_mask(query_slots, jnp.arange(k.shape[1]), kv_mask, window)
        probs = materialized_probs(cfg, q, k, mask)
        pattern = probs.reshape(batch, cfg.n_heads, seq, k.shape[1])
        tapped = Tap(f"layers.{self.layer_index}.attn.pattern")(pattern)
        if path == "materialized" or tapped is not pattern:
            z = apply_probs(probs if tapped is pattern else tapped.reshape(probs.shape), v)
        elif path == "blockwise":
            z = blockwise_attention(cfg, q, k, v, query_slots, kv_mask, window, cfg.execution.attention_block)
        elif path == "dot_product":
            z = dot_product_attention(cfg, q, k, v, mask)
        else:
            z = splash_attention(cfg, q, k, v, kv_mask, window, target_platform(cfg))
        z = self.tap("z", z, "act_heads")
        out = nn.Dense(cfg.d_model, use_bias=cfg.out_bias, kernel_init=INIT, name="o_proj")(
            z.reshape(batch, seq, cfg.n_heads * cfg.head_dim))
        return out, new_cache
