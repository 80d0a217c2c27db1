"""Splash attention (the Pallas TPU flash kernel) for a whole, uncached sequence.

The kernel works on one sequence and one KV head: ``q [groups, seq, head_dim]``,
``k, v [seq, head_dim]`` (its MQA form), with a static causal or local mask,
soft-capping built in, and *segment ids* for padding: real tokens are segment 1 and
padding is segment 0, so a real query sees only real keys, and a padding query sees
padding keys (at least itself), which keeps every row non-empty. It is ``vmap``-ed
over KV heads and batch.

Inside GSPMD a Pallas call cannot be partitioned automatically, so with a mesh
(``config.execution.mesh``) the kernel runs under ``shard_map``: batch split as
``act_batch`` and KV heads as ``act_kv_heads`` name it (the same logical rules as
the rest of the model), each device computing its own rows and heads.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig
from lrt_jax.model._attention_kernels import query_scale
from lrt_jax.model.sharding import activation_spec

__all__ = ["splash_attention", "splash_covers"]

LANES = 128  # the kernel tiles sequences in multiples of the TPU lane width


def splash_block(config: ModelConfig, seq: int) -> int:
    return min(config.execution.attention_block, seq)


def splash_covers(config: ModelConfig, seq: int) -> bool:
    """Whether the kernel can run a sequence of ``seq`` tokens (whole blocks of a multiple of 128)."""
    block = splash_block(config, seq)
    return block % LANES == 0 and seq % block == 0


@functools.lru_cache(maxsize=None)
def _kernel(seq: int, groups: int, window: int | None, softcap: float | None, block: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernels
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    if window is None:
        mask = masks.CausalMask((seq, seq))
    else:
        mask = masks.LocalMask((seq, seq), window_size=(window - 1, 0), offset=0)
    sizes = kernels.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                               block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    return kernels.make_splash_mqa_single_device(masks.MultiHeadMask([mask] * groups), block_sizes=sizes,
                                                 attn_logits_soft_cap=softcap, interpret=interpret)


def splash_attention(config: ModelConfig, q, k, v, kv_mask, window: int | None, platform: str) -> jax.Array:
    """Causal (or local) attention of ``q [b, seq, heads, d]`` over ``k, v [b, seq, kv, d]`` without a cache.

    Off TPU (``platform``) the kernel runs in Pallas' interpreter: exact, slow, for tests.
    """
    from jax.experimental.pallas.ops.tpu.splash_attention.splash_attention_kernel import SegmentIds

    b, seq, heads, d = q.shape
    n_kv = k.shape[2]
    groups = heads // n_kv
    if not splash_covers(config, seq):
        raise ValueError(f"attention='splash' needs the sequence ({seq}) to be whole blocks of a multiple of "
                         f"{LANES} (attention_block={config.execution.attention_block}); pad the batch or use "
                         "attention='blockwise'.")
    interpret = platform != "tpu"  # Pallas' interpreter: the same kernel, slowly, on CPU (tests)
    kernel = _kernel(seq, groups, window, config.attn_logit_softcap, splash_block(config, seq), interpret)
    q = (q * jnp.asarray(query_scale(config), q.dtype)).reshape(b, seq, n_kv, groups, d)
    q = jnp.einsum("bqkgd->bkgqd", q)
    k, v = jnp.einsum("bskd->bksd", k), jnp.einsum("bskd->bksd", v)
    segments = kv_mask.astype(jnp.int32)

    def attend(q, k, v, segments):
        per_head = jax.vmap(kernel, in_axes=(0, 0, 0, None))
        return jax.vmap(lambda q, k, v, s: per_head(q, k, v, SegmentIds(s, s)))(q, k, v, segments)

    mesh = config.execution.mesh
    if mesh is not None:
        q_spec = activation_spec(config, q.shape, ("act_batch", "act_kv_heads", None, None, None))
        kv_spec = activation_spec(config, k.shape, ("act_batch", "act_kv_heads", None, None))
        segment_spec = activation_spec(config, segments.shape, ("act_batch", None))
        attend = jax.shard_map(attend, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, segment_spec),
                               out_specs=q_spec, check_vma=False)
    out = attend(q, k, v, segments)  # [b, kv, g, seq, d]
    return jnp.einsum("bkgqd->bqkgd", out).reshape(b, seq, heads, d)
