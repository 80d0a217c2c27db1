"""Llama-style families: llama, mistral, qwen2, qwen3, gemma, gemma2.

They share one checkpoint layout (``model.layers.{i}.self_attn.q_proj.weight``, ...)
and differ in config flags: biases (qwen2), QK-norm (qwen3), sliding windows
(mistral, qwen2/3 ``layer_types``), and Gemma's embedding scale, ``1 + w`` norms,
soft-capping and sandwich norms (gemma2). The MoE families in
:mod:`lrt_jax.loading.moe_families` reuse the attention half of this table.
"""

from __future__ import annotations

import math

from lrt_jax.config import ModelConfig
from lrt_jax.loading.family_spec import (
    ACTIVATIONS_TO_HF,
    Family,
    activation_from_hf,
    head_dim_from_hf,
    layer_types_from_hf,
    layer_types_to_hf,
    refuse,
    rope_from_hf,
    rope_to_hf,
)
from lrt_jax.loading.tensor_rules import TRANSPOSE, rule

LAYER = "model.layers.{layer}"
TREE_LAYER = "layers_{layer}"

EMBEDDING_AND_HEAD_RULES = (
    rule("model.embed_tokens.weight", "embed/embedding"),
    rule("model.norm.weight", "final_norm/scale"),
    rule("lm_head.weight", "lm_head/kernel", TRANSPOSE),
)

ATTENTION_RULES = (
    rule(f"{LAYER}.input_layernorm.weight", f"{TREE_LAYER}/attn_norm/scale"),
    *(
        row
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj")
        for row in (
            rule(f"{LAYER}.self_attn.{proj}.weight", f"{TREE_LAYER}/attn/{proj}/kernel", TRANSPOSE),
            rule(f"{LAYER}.self_attn.{proj}.bias", f"{TREE_LAYER}/attn/{proj}/bias"),
        )
    ),
    rule(f"{LAYER}.self_attn.q_norm.weight", f"{TREE_LAYER}/attn/q_norm/scale"),
    rule(f"{LAYER}.self_attn.k_norm.weight", f"{TREE_LAYER}/attn/k_norm/scale"),
)


def gated_mlp_rules(hf_prefix: str, tree_prefix: str) -> tuple:
    """Rows for a gated MLP ``{gate,up,down}_proj`` (weights and optional biases)."""
    return tuple(
        row
        for proj in ("gate_proj", "up_proj", "down_proj")
        for row in (
            rule(f"{hf_prefix}.{proj}.weight", f"{tree_prefix}/{proj}/kernel", TRANSPOSE),
            rule(f"{hf_prefix}.{proj}.bias", f"{tree_prefix}/{proj}/bias"),
        )
    )


LLAMA_RULES = (
    *EMBEDDING_AND_HEAD_RULES,
    *ATTENTION_RULES,
    rule(f"{LAYER}.post_attention_layernorm.weight", f"{TREE_LAYER}/mlp_norm/scale"),
    *gated_mlp_rules(f"{LAYER}.mlp", f"{TREE_LAYER}/mlp"),
)

GEMMA2_RULES = (
    *EMBEDDING_AND_HEAD_RULES,
    *ATTENTION_RULES,
    rule(f"{LAYER}.post_attention_layernorm.weight", f"{TREE_LAYER}/post_attn_norm/scale"),
    rule(f"{LAYER}.pre_feedforward_layernorm.weight", f"{TREE_LAYER}/mlp_norm/scale"),
    rule(f"{LAYER}.post_feedforward_layernorm.weight", f"{TREE_LAYER}/post_mlp_norm/scale"),
    *gated_mlp_rules(f"{LAYER}.mlp", f"{TREE_LAYER}/mlp"),
)

# Checkpoints written by transformers < 4.31 carry the RoPE frequency buffer.
ROTARY_BUFFERS = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)

# Fields that change the computation in some family; every family must prove it reads them.
CAPABILITY_FIELDS = ("attn_logit_softcapping", "final_logit_softcapping", "clip_qkv", "use_bidirectional_attention")


def llama_like_fields(hf, *, activation_field: str = "hidden_act", consumes: tuple[str, ...] = ()) -> dict:
    """ModelConfig keyword arguments common to every llama-style family."""
    for field in CAPABILITY_FIELDS:
        if field not in consumes and getattr(hf, field, None):
            raise refuse(hf.model_type, field, getattr(hf, field), f"lrt_jax does not implement it for {hf.model_type}.")
    return dict(
        model_type=hf.model_type,
        vocab_size=hf.vocab_size,
        d_model=hf.hidden_size,
        n_layers=hf.num_hidden_layers,
        n_heads=hf.num_attention_heads,
        n_kv_heads=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
        head_dim=head_dim_from_hf(hf),
        d_ff=hf.intermediate_size,
        max_position_embeddings=hf.max_position_embeddings,
        norm_eps=hf.rms_norm_eps,
        tie_embeddings=bool(hf.tie_word_embeddings),
        activation=activation_from_hf(hf, activation_field),
        **rope_from_hf(hf),
    )


def llama_like_hf_fields(config: ModelConfig, *, activation_field: str = "hidden_act") -> dict:
    """The inverse of :func:`llama_like_fields`."""
    return {
        "model_type": config.model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.d_ff,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.norm_eps,
        "tie_word_embeddings": config.tie_embeddings,
        activation_field: ACTIVATIONS_TO_HF[config.activation],
        "rope_parameters": rope_to_hf(config),
    }


def sliding_everywhere_from_hf(hf) -> dict:
    """Mistral/Mixtral: a non-null ``sliding_window`` makes every layer sliding."""
    window = getattr(hf, "sliding_window", None)
    if window is None:
        return {}
    return {"sliding_window": positive_window(hf), "layer_types": ("sliding",) * hf.num_hidden_layers}


def positive_window(hf) -> int:
    """``hf.sliding_window`` as a positive int; 0, negative or non-integer windows are refused."""
    window = hf.sliding_window
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise refuse(hf.model_type, "sliding_window", window,
                     "a sliding window is a positive number of tokens (null for full attention).")
    return window


def sliding_everywhere_to_hf(config: ModelConfig) -> dict:
    sliding = [config.layer_type(i) == "sliding" for i in range(config.n_layers)]
    if any(sliding) and not all(sliding):
        raise refuse(config.model_type, "layer_types", config.layer_types, "this family slides on all layers or none.")
    return {"sliding_window": config.sliding_window if all(sliding) else None}


def sliding_per_layer_from_hf(hf) -> dict:
    """Qwen2/Qwen3/Qwen2-MoE/Gemma-2: transformers has resolved ``layer_types`` already."""
    layer_types = layer_types_from_hf(hf)
    if layer_types is None:
        return {}
    if not hf.sliding_window:  # transformers drops the window when use_sliding_window is false.
        raise refuse(hf.model_type, "layer_types", hf.layer_types, "sliding layers need a sliding_window (and, for "
                     "Qwen, use_sliding_window=true); transformers itself cannot run this config.")
    return {"layer_types": layer_types, "sliding_window": positive_window(hf)}


def sliding_per_layer_to_hf(config: ModelConfig) -> dict:
    any_sliding = config.layer_types is not None and "sliding" in config.layer_types
    return {
        "use_sliding_window": any_sliding,
        "sliding_window": config.sliding_window if any_sliding else None,
        "layer_types": layer_types_to_hf(config),
    }


def llama_from_hf(hf) -> ModelConfig:
    return ModelConfig(
        **llama_like_fields(hf), qkv_bias=hf.attention_bias, out_bias=hf.attention_bias, mlp_bias=hf.mlp_bias
    )


def llama_to_hf(config: ModelConfig) -> dict:
    return {**llama_like_hf_fields(config), "attention_bias": config.qkv_bias, "mlp_bias": config.mlp_bias}


def mistral_from_hf(hf) -> ModelConfig:
    return ModelConfig(**llama_like_fields(hf), **sliding_everywhere_from_hf(hf))


def mistral_to_hf(config: ModelConfig) -> dict:
    return {**llama_like_hf_fields(config), **sliding_everywhere_to_hf(config)}


def qwen2_from_hf(hf) -> ModelConfig:
    # Qwen2 hard-codes biases on q, k, v and none on o.
    return ModelConfig(**llama_like_fields(hf), qkv_bias=True, **sliding_per_layer_from_hf(hf))


def qwen2_to_hf(config: ModelConfig) -> dict:
    return {**llama_like_hf_fields(config), **sliding_per_layer_to_hf(config)}


def qwen3_from_hf(hf) -> ModelConfig:
    return ModelConfig(
        **llama_like_fields(hf),
        qkv_bias=hf.attention_bias,
        out_bias=hf.attention_bias,
        qk_norm="head",
        **sliding_per_layer_from_hf(hf),
    )


def qwen3_to_hf(config: ModelConfig) -> dict:
    return {**llama_like_hf_fields(config), "attention_bias": config.qkv_bias, **sliding_per_layer_to_hf(config)}


def gemma_fields(hf) -> dict:
    return dict(
        embedding_scale=math.sqrt(hf.hidden_size),
        norm_offset=1.0,
        qkv_bias=hf.attention_bias,
        out_bias=hf.attention_bias,
    )


def gemma_from_hf(hf) -> ModelConfig:
    return ModelConfig(**llama_like_fields(hf), **gemma_fields(hf))


def gemma_to_hf(config: ModelConfig) -> dict:
    return {**llama_like_hf_fields(config), "attention_bias": config.qkv_bias}


def gemma2_from_hf(hf) -> ModelConfig:
    return ModelConfig(
        **llama_like_fields(
            hf,
            activation_field="hidden_activation",
            consumes=("attn_logit_softcapping", "final_logit_softcapping"),
        ),
        **gemma_fields(hf),
        query_scale=hf.query_pre_attn_scalar**-0.5,
        attn_logit_softcap=hf.attn_logit_softcapping,
        final_logit_softcap=hf.final_logit_softcapping,
        post_attn_norm=True,
        post_mlp_norm=True,
        **sliding_per_layer_from_hf(hf),
    )


def gemma2_to_hf(config: ModelConfig) -> dict:
    query_scale = config.query_scale if config.query_scale is not None else config.head_dim**-0.5
    sliding = sliding_per_layer_to_hf(config)
    del sliding["use_sliding_window"]  # Gemma-2 reads layer_types directly.
    return {
        **llama_like_hf_fields(config, activation_field="hidden_activation"),
        "attention_bias": config.qkv_bias,
        "query_pre_attn_scalar": round(query_scale**-2),  # an int in HF; the round trip checks it.
        "attn_logit_softcapping": config.attn_logit_softcap,
        "final_logit_softcapping": config.final_logit_softcap,
        **sliding,
    }


LLAMA_FAMILIES = (
    Family("llama", "LlamaForCausalLM", llama_from_hf, llama_to_hf, LLAMA_RULES, ROTARY_BUFFERS),
    Family("mistral", "MistralForCausalLM", mistral_from_hf, mistral_to_hf, LLAMA_RULES, ROTARY_BUFFERS),
    Family("qwen2", "Qwen2ForCausalLM", qwen2_from_hf, qwen2_to_hf, LLAMA_RULES, ROTARY_BUFFERS),
    Family("qwen3", "Qwen3ForCausalLM", qwen3_from_hf, qwen3_to_hf, LLAMA_RULES),
    Family("gemma", "GemmaForCausalLM", gemma_from_hf, gemma_to_hf, LLAMA_RULES),
    Family("gemma2", "Gemma2ForCausalLM", gemma2_from_hf, gemma2_to_hf, GEMMA2_RULES),
)
