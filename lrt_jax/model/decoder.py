"""The decoder: one Flax linen module for every supported family.

Data path of one block (sequential residual; Gemma-2 adds the optional post-norms)::

    resid_pre ─ attn_norm ─ attention ─ [post_attn_norm] ─▶ attn_out
    resid_mid = resid_pre + attn_out
    resid_mid ─ mlp_norm ─ mlp | moe ─ [post_mlp_norm] ─▶ mlp_out
    resid_post = resid_mid + mlp_out

With ``parallel_residual`` (GPT-NeoX) both branches read ``resid_pre``:
``attn_out = attn(attn_norm(resid_pre))``, ``mlp_out = mlp(mlp_norm(resid_pre))`` and
``resid_post = resid_pre + attn_out + mlp_out``. ``resid_mid`` is then defined as
``resid_pre + attn_out``: it is a read-out of the partial sum, not an input of the
MLP, so rewriting it shifts ``resid_post`` additively but does not change what the MLP
sees.

Every name above is a site (``layers.{i}.<name>``), marked by a :class:`Tap` (the block
lives in :mod:`lrt_jax.model.block`, the scanned stack in :mod:`lrt_jax.model.scan`);
``embed`` is the (position-added, scaled) input embedding, ``final_norm`` the output of
the last norm, ``logits`` the (soft-capped) output logits.

Parameter tree (kernels ``[in, out]``)::

    embed/embedding [vocab, d_model]        pos_embed/embedding [max_pos, d_model] (learned positions)
    layers_{i}/attn_norm/{scale, bias?}     layers_{i}/attn/{q,k,v,o}_proj/{kernel, bias?}
    layers_{i}/attn/{q,k}_norm/scale        layers_{i}/post_attn_norm/scale        (QK-norm, Gemma-2)
    layers_{i}/mlp_norm/{scale, bias?}      layers_{i}/post_mlp_norm/scale         (Gemma-2)
    layers_{i}/mlp/{gate,up,down}_proj/{kernel, bias?}
    layers_{i}/moe/router/kernel [d, E]     layers_{i}/moe/{gate,up}_proj [E, d, f], down_proj [E, f, d]
    layers_{i}/moe/shared/{gate,up,down}_proj/kernel, layers_{i}/moe/shared_gate/kernel [d, 1]
    final_norm/{scale, bias?}               lm_head/kernel [d_model, vocab] (untied only)

Residual-stream values are pinned by the activation rules (``act_batch, act_seq,
act_embed``) at every site, and the logits by ``act_batch, act_seq, act_vocab``
(:func:`~lrt_jax.model.sharding.constrain`; the identity without a mesh).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrt_jax.config import ModelConfig
from lrt_jax.model.attention import LayerCache
from lrt_jax.model.block import Block, constrain_residual
from lrt_jax.model.mlp import INIT
from lrt_jax.model.norms import Norm
from lrt_jax.model.scan import ScanCache, SiteHooks, layer_period, run_layers, uses_layer_path
from lrt_jax.model.sharding import constrain
from lrt_jax.model.tap import Tap


class Decoder(nn.Module):
    """Decoder-only language model.

    Call: ``logits, cache = Decoder(config).apply({"params": p}, tokens, positions,
    kv_mask, cache, cache_index)``.

    Args:
      tokens: int ``[batch, seq]``.
      positions: int ``[batch, seq]`` positions seen by RoPE / learned embeddings
        (default ``arange(seq)``).
      kv_mask: bool ``[batch, slots]``, true for real (non-padding) key slots; ``slots``
        is ``seq`` without a cache and the cache length with one (default all true).
      cache: optional tuple of :class:`LayerCache`, one per layer, ``[batch, slots,
        n_kv_heads, head_dim]`` each, or (scan mode) a :class:`~lrt_jax.model.scan.ScanCache`;
        the new keys/values are written at ``cache_index`` and the updated cache is
        returned in the form given.
      cache_index: int scalar, the slot of ``tokens[:, 0]`` in the cache.

    Returns:
      ``(logits [batch, seq, vocab] float32, new_cache or None)``.

    With ``config.execution.scan_layers`` (or a ``remat`` option) the layers run through
    :mod:`lrt_jax.model.scan`, whose site hooks are the ``hooks`` attribute (layer sites
    are then not seen by method interceptors); ``params`` may then also be a stacked
    tree from :func:`~lrt_jax.model.scan.stack_layers`. Initialisation always builds the
    per-layer tree.
    """

    config: ModelConfig
    hooks: SiteHooks | None = None

    def setup(self):
        cfg = self.config
        self.embed = nn.Embed(cfg.vocab_size, cfg.d_model, embedding_init=INIT)
        if cfg.position_embedding == "learned":
            self.pos_embed = nn.Embed(cfg.max_position_embeddings, cfg.d_model, embedding_init=INIT)
        self.layers = [Block(cfg, i) for i in range(cfg.n_layers)]  # named layers_{i}
        self.final_norm = Norm(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = HeadKernel(cfg)
        self.taps = {site: Tap(site) for site in ("embed", "final_norm", "logits")}

    def __call__(self, tokens, positions=None, kv_mask=None, cache=None, cache_index=None):
        cfg = self.config
        batch, seq = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(seq), (batch, seq))
        if kv_mask is None:
            kv_mask = jnp.ones((batch, seq if cache is None else cache_slots(cache)), bool)
        if cache is not None and cache_index is None:
            cache_index = jnp.zeros((), jnp.int32)

        x = self.embed(tokens)
        if cfg.position_embedding == "learned":
            x = x + self.pos_embed(positions)
        if cfg.embedding_scale is not None:
            # HF rounds the scale to the activation dtype first; so do we, for bf16 parity.
            x = x * jnp.asarray(cfg.embedding_scale, x.dtype)
        x = self.taps["embed"](constrain_residual(cfg, x))

        if uses_layer_path(cfg) and not self.is_initializing():
            x, new_cache = run_layers(cfg, self.variables["params"], x, positions, kv_mask, cache, cache_index,
                                      self.hooks)
        else:
            new_cache = []
            for i, block in enumerate(self.layers):
                x, layer_cache = block(x, positions, kv_mask, None if cache is None else cache[i], cache_index)
                new_cache.append(layer_cache)
            new_cache = None if cache is None else tuple(new_cache)

        x = self.taps["final_norm"](constrain_residual(cfg, self.final_norm(x)))
        head = self.embed.embedding.T if cfg.tie_embeddings else self.lm_head()
        logits = constrain(cfg, head_logits(cfg, x, head), "act_batch", "act_seq", "act_vocab")
        return self.taps["logits"](logits), new_cache


def cache_slots(cache) -> int:
    """The number of key/value slots of a decoder cache (either form)."""
    return cache.slots if isinstance(cache, ScanCache) else cache[0].k.shape[1]


class HeadKernel(nn.Module):
    """The untied output head's ``kernel [d_model, vocab]`` (the same tree path as a bias-free Dense)."""

    config: ModelConfig

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("kernel", INIT, (self.config.d_model, self.config.vocab_size), jnp.float32)


def head_logits(config: ModelConfig, hidden: jax.Array, head: jax.Array) -> jax.Array:
    """Float32 logits ``[..., vocab]`` from ``final_norm`` values and the head ``[d_model, vocab]``, soft-capped."""
    logits = (hidden @ head.astype(hidden.dtype)).astype(jnp.float32)
    if config.final_logit_softcap is not None:
        logits = jnp.tanh(logits / config.final_logit_softcap) * config.final_logit_softcap
    return logits


def unembed(config: ModelConfig, params, hidden: jax.Array) -> jax.Array:
    """The decoder's output head as a function of ``params``: logits for chosen ``final_norm`` values only.

    Scorers that need a few positions' logits capture ``final_norm`` and unembed just
    those, so XLA drops the full ``[batch, seq, vocab]`` head.
    """
    head = params["embed"]["embedding"].T if config.tie_embeddings else params["lm_head"]["kernel"]
    return head_logits(config, hidden, head)


def init_params(config: ModelConfig, key: jax.Array, dtype=jnp.float32):
    """Random parameters (normal(0.02) kernels, unit norms) for ``config``, cast to ``dtype``."""
    params = Decoder(config).init(key, jnp.zeros((1, 1), jnp.int32))["params"]
    return jax.tree.map(lambda p: p.astype(dtype), params)


def empty_cache(config: ModelConfig, batch: int, slots: int, dtype=jnp.float32) -> tuple[LayerCache, ...] | ScanCache:
    """A zeroed KV cache of ``slots`` slots for every layer.

    A tuple of per-layer :class:`LayerCache`; with ``scan_layers`` a
    :class:`~lrt_jax.model.scan.ScanCache` (stacked per position of the layer period), which
    the scanned decoder updates in place.
    """
    shape = (batch, slots, config.n_kv_heads, config.head_dim)
    if config.execution.scan_layers:
        period = layer_period(config)
        chunks = config.n_layers // period
        stacked = LayerCache(jnp.zeros((chunks, *shape), dtype), jnp.zeros((chunks, *shape), dtype))
        rest = config.n_layers - chunks * period
        return ScanCache((stacked,) * period, tuple(LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
                                                    for _ in range(rest)))
    return tuple(LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.n_layers))
