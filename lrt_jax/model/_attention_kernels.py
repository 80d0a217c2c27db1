"""The ways to compute masked, grouped softmax attention; every one gives the same numbers.

All take queries ``q [batch, q, n_heads, head_dim]`` and keys/values ``k, v [batch,
slots, n_kv_heads, head_dim]`` and return ``[batch, q, n_heads, head_dim]``. Query head
``h`` reads KV head ``h // groups`` (``groups = n_heads // n_kv_heads``). Masks are on
slots (see :mod:`lrt_jax.model.attention`): ``query_slots [q]``, ``kv_mask [batch,
slots]`` and, on sliding layers, a ``window``. Scores are ``q·k · scale``, soft-capped
as ``cap · tanh(s / cap)`` (Gemma-2), and the softmax runs in float32.

* :func:`materialized_probs` / :func:`materialized_attention` — the full ``[b, kv, g, q,
  slots]`` score tensor. Exact reference; the only path that exposes the pattern.
* :func:`blockwise_attention` — online softmax (flash attention's recurrence) over key
  blocks inside query blocks, in plain ``jnp``: temporaries ``O(b · heads · block²)``,
  never a ``[q, slots]`` tensor. Differentiable; each key step is rematerialised in
  the backward pass, so gradients keep only the running statistics.
* :func:`dot_product_attention` — ``jax.nn.dot_product_attention`` (cuDNN flash on GPU
  in bf16/fp16, XLA elsewhere). It has no soft-capping.

Fully masked query rows (padding queries in a left-padded batch) stay finite on every
path; their values are meaningless and never reach a real token.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig

__all__ = ["attention_mask", "blockwise_attention", "dot_product_attention", "materialized_attention",
           "materialized_probs"]

# A finite fill: exp(fill - max) underflows to 0, and a fully masked row stays free of NaN.
MASKED = float(jnp.finfo(jnp.float32).min)


def attention_mask(
    query_slots: jax.Array, key_slots: jax.Array, kv_mask: jax.Array, window: int | None
) -> jax.Array:
    """Boolean ``[batch, 1, q, k]`` mask from slot indices ``[q]``, ``[k]`` and ``kv_mask [batch, k]``."""
    causal = key_slots[None, :] <= query_slots[:, None]
    if window is not None:
        causal = causal & (query_slots[:, None] - key_slots[None, :] < window)
    return causal[None, None] & kv_mask[:, None, None, :]


def query_scale(config: ModelConfig) -> float:
    return config.query_scale if config.query_scale is not None else config.head_dim**-0.5


def _grouped(q: jax.Array, n_kv_heads: int) -> jax.Array:
    """``[b, q, heads, d]`` → ``[b, q, kv, groups, d]``."""
    b, t, heads, d = q.shape
    return q.reshape(b, t, n_kv_heads, heads // n_kv_heads, d)


def _scores(config: ModelConfig, q: jax.Array, k: jax.Array) -> jax.Array:
    """Float32 scaled, soft-capped scores ``[b, kv, g, q, s]`` of grouped ``q`` and ``k [b, s, kv, d]``."""
    scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k, preferred_element_type=jnp.float32) * query_scale(config)
    if config.attn_logit_softcap is not None:
        scores = jnp.tanh(scores / config.attn_logit_softcap) * config.attn_logit_softcap
    return scores


def materialized_probs(config: ModelConfig, q, k, mask) -> jax.Array:
    """Attention probabilities ``[b, kv, g, q, slots]`` (in ``k``'s dtype) under ``mask [b, 1, q, slots]``."""
    scores = _scores(config, _grouped(q, k.shape[2]), k)
    scores = jnp.where(mask[:, :, None], scores, MASKED)
    return jax.nn.softmax(scores, axis=-1).astype(k.dtype)


def apply_probs(probs: jax.Array, v: jax.Array) -> jax.Array:
    """``probs [b, kv, g, q, s]`` times ``v [b, s, kv, d]`` → ``[b, q, heads, d]``."""
    b, kv, g, t, _ = probs.shape
    return jnp.einsum("bkgqs,bskd->bqkgd", probs.astype(v.dtype), v).reshape(b, t, kv * g, v.shape[-1])


def materialized_attention(config: ModelConfig, q, k, v, mask) -> jax.Array:
    """Attention through the full score tensor (see :func:`materialized_probs`)."""
    return apply_probs(materialized_probs(config, q, k, mask), v)


def _pad_to_blocks(x: jax.Array, axis: int, block: int, value=0) -> jax.Array:
    pad = -x.shape[axis] % block
    if not pad:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths, constant_values=value)


def _blocks(x: jax.Array, axis: int, block: int) -> jax.Array:
    """Split ``axis`` (a multiple of ``block``) into ``[n_blocks, ..., block, ...]`` with the block index first."""
    shape = x.shape[:axis] + (x.shape[axis] // block, block) + x.shape[axis + 1:]
    return jnp.moveaxis(x.reshape(shape), axis, 0)


def blockwise_attention(config: ModelConfig, q, k, v, query_slots, kv_mask, window: int | None,
                        block: int) -> jax.Array:
    """Online-softmax attention over ``block``-sized key blocks within ``block``-sized query blocks.

    For each query block, a running maximum ``m``, normaliser ``l`` and weighted sum
    ``acc`` (float32) are updated key block by key block::

        m' = max(m, rowmax(s))    p = exp(s − m')    l' = l·e^{m−m'} + Σp    acc' = acc·e^{m−m'} + p·v

    and the output is ``acc / l`` (0 where a row saw no key). Sequences are padded to
    whole blocks with masked keys; padded queries are dropped.
    """
    b, t, heads, d = q.shape
    slots, n_kv = k.shape[1], k.shape[2]
    groups = heads // n_kv
    block_q, block_k = min(block, t), min(block, slots)

    q_blocks = _blocks(_pad_to_blocks(_grouped(q, n_kv), 1, block_q), 1, block_q)  # [nq, b, bq, kv, g, d]
    q_slot_blocks = _blocks(_pad_to_blocks(query_slots, 0, block_q), 0, block_q)  # [nq, bq]
    key_inputs = (
        _blocks(_pad_to_blocks(k, 1, block_k), 1, block_k),  # [nk, b, bk, kv, d]
        _blocks(_pad_to_blocks(v, 1, block_k), 1, block_k),
        _blocks(jnp.arange(k.shape[1] + (-slots % block_k)), 0, block_k),  # [nk, bk]
        _blocks(_pad_to_blocks(kv_mask, 1, block_k, value=False), 1, block_k),  # [nk, b, bk]
    )

    def attend_query_block(inputs):
        q_block, q_slots = inputs

        # The backward pass recomputes a block's probabilities instead of storing them all.
        @functools.partial(jax.checkpoint, prevent_cse=False)
        def step(carry, key_block):
            m, l, acc = carry
            k_block, v_block, k_slots, k_mask = key_block
            mask = attention_mask(q_slots, k_slots, k_mask, window)[:, :, None]  # [b, 1, 1, bq, bk]
            scores = jnp.where(mask, _scores(config, q_block, k_block), MASKED)
            m_new = jnp.maximum(m, jnp.max(scores, axis=-1))
            p = jnp.where(mask, jnp.exp(scores - m_new[..., None]), 0.0)
            correction = jnp.exp(m - m_new)
            l = l * correction + jnp.sum(p, axis=-1)
            pv = jnp.einsum("bkgqs,bskd->bkgqd", p.astype(v.dtype), v_block, preferred_element_type=jnp.float32)
            return (m_new, l, acc * correction[..., None] + pv), None

        stats = (b, n_kv, groups, block_q)
        init = (jnp.full(stats, MASKED, jnp.float32), jnp.zeros(stats, jnp.float32),
                jnp.zeros((*stats, d), jnp.float32))
        (_, l, acc), _ = jax.lax.scan(step, init, key_inputs)
        return acc / jnp.where(l > 0, l, 1.0)[..., None]  # [b, kv, g, bq, d]

    out = jax.lax.map(attend_query_block, (q_blocks, q_slot_blocks))  # [nq, b, kv, g, bq, d]
    out = jnp.moveaxis(out, 0, 3).reshape(b, n_kv, groups, -1, d)[:, :, :, :t]
    return jnp.einsum("bkgqd->bqkgd", out).reshape(b, t, heads, d).astype(v.dtype)


def dot_product_covers(config: ModelConfig) -> bool:
    """Whether ``jax.nn.dot_product_attention`` computes this config (it has no logit soft-capping)."""
    return config.attn_logit_softcap is None


def dot_product_attention(config: ModelConfig, q, k, v, mask) -> jax.Array:
    """``jax.nn.dot_product_attention`` under the boolean slot ``mask [b, 1, q, slots]``.

    cuDNN's fused kernel on GPU for bf16/fp16 inputs, XLA otherwise. The mask covers
    causality, windows, padding and the cache at once (cuDNN turns it into a
    ``[b, 1, q, slots]`` bias: one per row, not per head).
    """
    if not dot_product_covers(config):
        raise ValueError("attention='dot_product' cannot soft-cap logits (attn_logit_softcap is set); "
                         "use attention='blockwise' or 'auto'.")
    fused = jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=query_scale(config),
                                        implementation="cudnn" if fused else "xla")
