"""Llama-style families: llama, mistral, qwen2, qwen3, gemma, gemma2.

They share one checkpoint layout (``model.layers.{i}.self_attn.q_proj.weight``, ...)
and differ in config flags: biases (qwen2), QK-norm (qwen3), sliding windows
(mistral, qwen2/3 ``layer_types``), and Gemma's embedding scale, ``1 + w`` norms,
soft-capping and sandwich norms (gemma2). The MoE families in
:mod:`lrt_jax.loading.moe_families` reuse the attention half of the tensor table and
the shared rows of the config field table (:mod:`lrt_jax.loading.field_table`).
"""

from __future__ import annotations

import math

from lrt_jax.config import ModelConfig
from lrt_jax.loading.family_spec import (
    ACTIVATIONS_TO_HF,
    ATTENTION_BIAS_READS,
    Family,
    activation_from_hf,
    head_dim_from_hf,
    kv_heads_from_hf,
    layer_types_from_hf,
    layer_types_to_hf,
    rope_reads,
    rope_to_hf,
)
from lrt_jax.loading.field_table import Ignored, Refusal, Requires, fixed, hf, refuse
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

# Every llama-style family (and the MoE families) reads these rows; families add and override rows.
LLAMA_LIKE_READS = {
    "vocab_size": hf("vocab_size"),
    "d_model": hf("hidden_size"),
    "n_layers": hf("num_hidden_layers"),
    "n_heads": hf("num_attention_heads"),
    "n_kv_heads": hf("num_key_value_heads", "num_attention_heads", convert=kv_heads_from_hf),
    "head_dim": hf("head_dim", "hidden_size", "num_attention_heads", convert=head_dim_from_hf),
    "d_ff": hf("intermediate_size"),
    "max_position_embeddings": hf("max_position_embeddings"),
    "norm_eps": hf("rms_norm_eps"),
    "tie_embeddings": hf("tie_word_embeddings", convert=bool),
    "activation": hf("hidden_act", convert=activation_from_hf),
    **rope_reads(),
}


def positive_window(window) -> int:
    """A sliding window as a positive int; 0, negative or non-integer windows are refused."""
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise Refusal("a sliding window is a positive number of tokens (null for full attention).")
    return window


def optional_window(window) -> int | None:
    return None if window is None else positive_window(window)


def sliding_on_every_layer(window, n_layers: int) -> tuple[str, ...] | None:
    return None if window is None else ("sliding",) * n_layers


# Mistral/Mixtral: a non-null sliding_window makes every layer sliding.
SLIDING_EVERYWHERE_READS = {
    "sliding_window": hf("sliding_window", convert=optional_window),
    "layer_types": hf("sliding_window", "num_hidden_layers", convert=sliding_on_every_layer),
}


def sliding_layer_types(hf_types, window) -> tuple[str, ...] | None:
    layer_types = layer_types_from_hf(hf_types)
    if layer_types is not None and not window:  # transformers drops the window when use_sliding_window is false.
        raise Refusal("sliding layers need a sliding_window (and, for Qwen, use_sliding_window=true); "
                      "transformers itself cannot run this config.")
    return layer_types


def window_of_sliding_layers(window, hf_types) -> int | None:
    return positive_window(window) if "sliding_attention" in (hf_types or ()) else None


# Qwen2/Qwen3/Qwen2-MoE/Gemma-2: transformers has resolved layer_types already.
SLIDING_PER_LAYER_READS = {
    "layer_types": hf("layer_types", "sliding_window", convert=sliding_layer_types),
    "sliding_window": hf("sliding_window", "layer_types", convert=window_of_sliding_layers),
}
QWEN_SLIDING_KNOWN = dict.fromkeys(
    ("use_sliding_window", "max_window_layers"),
    Ignored("transformers folds it into layer_types and sliding_window, which are read"),
)
BIDIRECTIONAL_KNOWN = {
    "use_bidirectional_attention": Requires((None, False), "bidirectional (non-causal) attention is not implemented")
}


def llama_like_hf_fields(config: ModelConfig, *, activation_field: str = "hidden_act") -> dict:
    """The inverse of the computed rows of :data:`LLAMA_LIKE_READS` (the copies invert themselves)."""
    return {
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "tie_word_embeddings": config.tie_embeddings,
        activation_field: ACTIVATIONS_TO_HF[config.activation],
        "rope_parameters": rope_to_hf(config),
    }


def sliding_everywhere_to_hf(config: ModelConfig) -> dict:
    sliding = [config.layer_type(i) == "sliding" for i in range(config.n_layers)]
    if any(sliding) and not all(sliding):
        raise refuse(config.model_type, "layer_types", config.layer_types, "this family slides on all layers or none.")
    return {"sliding_window": config.sliding_window if all(sliding) else None}


def sliding_per_layer_to_hf(config: ModelConfig) -> dict:
    any_sliding = config.layer_types is not None and "sliding" in config.layer_types
    return {
        "use_sliding_window": any_sliding,
        "sliding_window": config.sliding_window if any_sliding else None,
        "layer_types": layer_types_to_hf(config),
    }


LLAMA_READS = {**LLAMA_LIKE_READS, **ATTENTION_BIAS_READS, "mlp_bias": hf("mlp_bias")}
LLAMA_KNOWN = {"pretraining_tp": Ignored("transformers 5 does not read it (older versions sliced the matmuls "
                                         "for tensor parallelism: the same product)")}


MISTRAL_READS = {**LLAMA_LIKE_READS, **SLIDING_EVERYWHERE_READS}


def mistral_to_hf(config: ModelConfig) -> dict:
    return {**llama_like_hf_fields(config), **sliding_everywhere_to_hf(config)}


# Qwen2 hard-codes biases on q, k, v and none on o.
QWEN2_READS = {**LLAMA_LIKE_READS, "qkv_bias": fixed(True), **SLIDING_PER_LAYER_READS}
QWEN2_KNOWN = {
    **QWEN_SLIDING_KNOWN,
    "use_mrope": Requires((None, False), "multimodal RoPE (Qwen2-VL's mrope_section) is not implemented"),
}


def qwen_to_hf(config: ModelConfig) -> dict:
    return {**llama_like_hf_fields(config), **sliding_per_layer_to_hf(config)}


QWEN3_READS = {**LLAMA_LIKE_READS, **ATTENTION_BIAS_READS, "qk_norm": fixed("head"), **SLIDING_PER_LAYER_READS}


GEMMA_READS = {
    **LLAMA_LIKE_READS,
    **ATTENTION_BIAS_READS,
    "embedding_scale": hf("hidden_size", convert=math.sqrt),
    "norm_offset": fixed(1.0),
}
GEMMA_KNOWN = {
    **BIDIRECTIONAL_KNOWN,
    # Hub Gemma configs carry both; transformers 5 reads hidden_act, rewriting the legacy "gelu" to the tanh
    # approximation Gemma was trained with.
    "hidden_activation": Ignored("transformers' Gemma reads hidden_act instead"),
}


def query_scale_from_hf(query_pre_attn_scalar: float) -> float:
    return query_pre_attn_scalar**-0.5


GEMMA2_READS = {
    **GEMMA_READS,
    "activation": hf("hidden_activation", convert=activation_from_hf),
    "query_scale": hf("query_pre_attn_scalar", convert=query_scale_from_hf),
    "attn_logit_softcap": hf("attn_logit_softcapping"),
    "final_logit_softcap": hf("final_logit_softcapping"),
    "post_attn_norm": fixed(True),
    "post_mlp_norm": fixed(True),
    **SLIDING_PER_LAYER_READS,
}
GEMMA2_KNOWN = {**BIDIRECTIONAL_KNOWN, "hidden_act": Ignored("transformers' Gemma-2 reads hidden_activation instead")}


def gemma2_to_hf(config: ModelConfig) -> dict:
    query_scale = config.query_scale if config.query_scale is not None else config.head_dim**-0.5
    sliding = sliding_per_layer_to_hf(config)
    del sliding["use_sliding_window"]  # Gemma-2 reads layer_types directly.
    return {
        **llama_like_hf_fields(config, activation_field="hidden_activation"),
        "query_pre_attn_scalar": round(query_scale**-2),  # an int in HF; the round trip checks it.
        **sliding,
    }


LLAMA_FAMILIES = (
    Family("llama", "LlamaForCausalLM", LLAMA_READS, LLAMA_KNOWN, llama_like_hf_fields, LLAMA_RULES, ROTARY_BUFFERS),
    Family("mistral", "MistralForCausalLM", MISTRAL_READS, {}, mistral_to_hf, LLAMA_RULES, ROTARY_BUFFERS),
    Family("qwen2", "Qwen2ForCausalLM", QWEN2_READS, QWEN2_KNOWN, qwen_to_hf, LLAMA_RULES, ROTARY_BUFFERS),
    Family("qwen3", "Qwen3ForCausalLM", QWEN3_READS, QWEN_SLIDING_KNOWN, qwen_to_hf, LLAMA_RULES),
    Family("gemma", "GemmaForCausalLM", GEMMA_READS, GEMMA_KNOWN, llama_like_hf_fields, LLAMA_RULES),
    Family("gemma2", "Gemma2ForCausalLM", GEMMA2_READS, GEMMA2_KNOWN, gemma2_to_hf, GEMMA2_RULES),
)
