"""Model configuration: one frozen dataclass that describes every supported decoder.

A family (llama, gemma2, gpt_neox, mixtral, ...) is not a class of its own: it is a
set of flag values on :class:`ModelConfig`. The family modules in
:mod:`lrt_jax.loading` translate an HF ``config.json`` into these flags and refuse
fields they do not implement, so a config that loads is a config we compute
exactly.

Conventions used throughout the package:

* ``d_model`` — residual width; ``head_dim`` — width of one attention head;
  ``n_heads`` query heads share ``n_kv_heads`` key/value heads (MHA when equal,
  MQA when ``n_kv_heads == 1``, GQA otherwise).
* ``layer_types[i]`` is ``"full"`` or ``"sliding"``; sliding layers attend to the
  last ``sliding_window`` positions (query index − key index < window).
* Norm weights are applied as ``x̂ · (norm_offset + scale)`` (Gemma stores
  ``scale`` relative to 1, so its offset is 1.0).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

NormType = Literal["rms", "layer"]
Activation = Literal["silu", "gelu", "gelu_tanh", "relu"]


class UnsupportedModelError(ValueError):
    """Raised when a checkpoint's config asks for computation lrt_jax does not implement."""


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling.

    ``kind``: ``"default"`` (none), ``"linear"`` (positions divided by ``factor``) or
    ``"llama3"`` (Llama-3.1 wavelength-dependent smoothing between
    ``low_freq_factor`` and ``high_freq_factor``).
    """

    kind: Literal["default", "linear", "llama3"] = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class Execution:
    """How the decoder is computed, not what it computes: every choice gives the same numbers.

    Attributes:
      attention: ``"auto"`` (the materialised scores when the keys fit in one block, as tiny
        models always ran; else splash on TPU, dot_product on GPU when it covers the config,
        else blockwise), ``"materialized"`` (the full ``[b, kv, g, q, s]`` fp32 score tensor),
        ``"blockwise"`` (online softmax over key blocks within query blocks, plain ``jnp``,
        temporaries ``O(heads · block²)`` per row), ``"dot_product"``
        (``jax.nn.dot_product_attention``: cuDNN on GPU in bf16/fp16, XLA elsewhere; no
        soft-capping) or ``"splash"`` (the Pallas TPU kernel; Pallas' interpreter off TPU).
        A path that cannot compute a call falls back to blockwise for it (dot_product under
        soft-capping; splash on cached calls and sequences not in whole 128-blocks). The
        ``attn.pattern`` site materialises the scores of its layer on any path.
      attention_block: query and key block size of the blockwise and splash paths, and the
        longest key sequence that ``"auto"`` still materialises.
      moe: ``"auto"`` (sparse when it is cheaper), ``"dense"`` (every expert on every
        token, weighted; exact and fast for a handful of tiny experts) or ``"sparse"``
        (tokens sorted by expert, a grouped matmul; no token is dropped).
      scan_layers: run the blocks under ``lax.scan`` over stacked parameters (one compiled
        block instead of ``n_layers``); sites and interventions behave as unrolled.
      remat: ``"none"``, ``"block"`` (recompute each block in the backward pass) or
        ``"dots"`` (keep matmul outputs, recompute the rest).
      mesh: the :class:`jax.sharding.Mesh` the parameters live on, or ``None``;
        :func:`lrt_jax.parallel.shard_lm` sets it. With a mesh, activations are
        constrained by ``rules`` at every site and inside attention and the MLP.
      rules: logical-axis rules for activations (``()``: the package defaults,
        :data:`lrt_jax.parallel.DEFAULT_RULES`).
      materialize: site names whose values need a materialising path (``attn.pattern``
        forces the materialised attention of its layer, ``moe.expert_out`` the per-expert
        outputs); :func:`lrt_jax.run` fills it from the requested sites, so a program that
        reads only residual sites is exactly the one without them.
    """

    attention: Literal["auto", "materialized", "blockwise", "dot_product", "splash"] = "auto"
    attention_block: int = 512
    moe: Literal["auto", "dense", "sparse"] = "auto"
    scan_layers: bool = False
    remat: Literal["none", "block", "dots"] = "none"
    mesh: Any = None
    rules: tuple = ()
    materialize: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every knob of the decoder. Frozen and hashable, so it can be a static jit argument."""

    model_type: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    max_position_embeddings: int = 2048

    # Embeddings and output head.
    position_embedding: Literal["rope", "learned"] = "rope"
    embedding_scale: float | None = None  # Gemma multiplies embeddings by sqrt(d_model).
    tie_embeddings: bool = False
    final_logit_softcap: float | None = None

    # Norms.
    norm_type: NormType = "rms"
    norm_eps: float = 1e-6
    norm_offset: float = 0.0
    norm_bias: bool = False  # LayerNorm with a bias term (gpt2, gpt_neox).
    post_attn_norm: bool = False  # Gemma-2 "sandwich" norms after attention and MLP.
    post_mlp_norm: bool = False
    qk_norm: Literal[None, "head", "full"] = None  # qwen3: per head; olmoe: over all heads.

    # Attention.
    qkv_bias: bool = False
    out_bias: bool = False
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0  # Partial rotary (gpt_neox rotary_pct).
    rope_scaling: RopeScaling = RopeScaling()
    query_scale: float | None = None  # None: head_dim ** -0.5.
    attn_logit_softcap: float | None = None
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None  # None: all "full".

    # MLP.
    mlp_type: Literal["gated", "plain"] = "gated"
    activation: Activation = "silu"
    mlp_bias: bool = False

    # Residual wiring.
    parallel_residual: bool = False  # gpt_neox: x + attn(ln1 x) + mlp(ln2 x).

    # Mixture of experts (n_experts == 0: dense model).
    n_experts: int = 0
    top_k: int = 0
    moe_d_ff: int = 0
    norm_topk_prob: bool = True
    shared_expert_d_ff: int = 0  # qwen2_moe shared expert, gated by sigmoid(x · w).

    # How to compute it (never what): attention path, MoE dispatch, scan, mesh.
    execution: Execution = Execution()

    def __post_init__(self):
        if self.n_heads % self.n_kv_heads:
            raise UnsupportedModelError(
                f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}; "
                "grouped-query attention needs whole groups."
            )
        if self.layer_types is not None and len(self.layer_types) != self.n_layers:
            raise UnsupportedModelError(
                f"layer_types has {len(self.layer_types)} entries for {self.n_layers} layers."
            )
        if self.n_experts and not 0 < self.top_k <= self.n_experts:
            raise UnsupportedModelError(f"top_k={self.top_k} must be in 1..n_experts={self.n_experts}.")

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def rotary_dim(self) -> int:
        """Number of leading head dimensions that RoPE rotates (even)."""
        return int(self.head_dim * self.rope_fraction) // 2 * 2

    def layer_type(self, index: int) -> str:
        return "full" if self.layer_types is None else self.layer_types[index]

    def replace(self, **changes) -> "ModelConfig":
        """Return a copy with ``changes`` applied (configs are immutable)."""
        return dataclasses.replace(self, **changes)
