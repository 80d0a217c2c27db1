"""GPT-style families with LayerNorm and biases: gpt2 and gpt_neox (Pythia).

GPT-2 has learned absolute positions, Conv1D weights stored ``[in, out]`` (our kernel
layout already, so no transpose) and a fused ``c_attn`` whose outputs are ``q | k | v``
back to back. GPT-NeoX has partial rotary, parallel residual, and a fused
``query_key_value`` whose rows are interleaved per head (``[n_heads, (q|k|v),
head_dim]``). Both use a plain (non-gated) MLP, stored as ``up_proj``/``down_proj``.
"""

from __future__ import annotations

import operator

from lrt_jax.config import ModelConfig
from lrt_jax.loading.family_spec import (
    ACTIVATIONS_TO_HF,
    ATTENTION_BIAS_READS,
    Family,
    activation_from_hf,
    rope_fraction_from_hf,
    rope_reads,
    rope_to_hf,
)
from lrt_jax.loading.field_table import DROPOUT, Ignored, Requires, fixed, hf, refuse
from lrt_jax.loading.tensor_rules import IDENTITY, SPLIT_CONTIGUOUS_QKV, SPLIT_PER_HEAD_QKV, TRANSPOSE, rule

TREE_LAYER = "layers_{layer}"
QKV_KERNELS = tuple(f"{TREE_LAYER}/attn/{p}/kernel" for p in ("q_proj", "k_proj", "v_proj"))
QKV_BIASES = tuple(f"{TREE_LAYER}/attn/{p}/bias" for p in ("q_proj", "k_proj", "v_proj"))


def layer_norm_rules(hf_name: str, tree_path: str) -> tuple:
    return (rule(f"{hf_name}.weight", f"{tree_path}/scale"), rule(f"{hf_name}.bias", f"{tree_path}/bias"))


def linear_rules(hf_name: str, tree_path: str, weight_fixup=TRANSPOSE) -> tuple:
    return (rule(f"{hf_name}.weight", f"{tree_path}/kernel", weight_fixup), rule(f"{hf_name}.bias", f"{tree_path}/bias"))


GPT2_LAYER = "transformer.h.{layer}"
GPT2_RULES = (
    rule("transformer.wte.weight", "embed/embedding"),
    rule("transformer.wpe.weight", "pos_embed/embedding"),
    *layer_norm_rules(f"{GPT2_LAYER}.ln_1", f"{TREE_LAYER}/attn_norm"),
    rule(f"{GPT2_LAYER}.attn.c_attn.weight", QKV_KERNELS, SPLIT_CONTIGUOUS_QKV),
    rule(f"{GPT2_LAYER}.attn.c_attn.bias", QKV_BIASES, SPLIT_CONTIGUOUS_QKV),
    *linear_rules(f"{GPT2_LAYER}.attn.c_proj", f"{TREE_LAYER}/attn/o_proj", IDENTITY),
    *layer_norm_rules(f"{GPT2_LAYER}.ln_2", f"{TREE_LAYER}/mlp_norm"),
    *linear_rules(f"{GPT2_LAYER}.mlp.c_fc", f"{TREE_LAYER}/mlp/up_proj", IDENTITY),
    *linear_rules(f"{GPT2_LAYER}.mlp.c_proj", f"{TREE_LAYER}/mlp/down_proj", IDENTITY),
    *layer_norm_rules("transformer.ln_f", "final_norm"),
    rule("lm_head.weight", "lm_head/kernel", TRANSPOSE),
)
# Causal-mask buffers that transformers < 4.37 serialised with the weights.
GPT2_BUFFERS = (r"transformer\.h\.\d+\.attn\.(bias|masked_bias)",)

NEOX_LAYER = "gpt_neox.layers.{layer}"
GPT_NEOX_RULES = (
    rule("gpt_neox.embed_in.weight", "embed/embedding"),
    *layer_norm_rules(f"{NEOX_LAYER}.input_layernorm", f"{TREE_LAYER}/attn_norm"),
    rule(f"{NEOX_LAYER}.attention.query_key_value.weight", QKV_KERNELS, SPLIT_PER_HEAD_QKV),
    rule(f"{NEOX_LAYER}.attention.query_key_value.bias", QKV_BIASES, SPLIT_PER_HEAD_QKV),
    *linear_rules(f"{NEOX_LAYER}.attention.dense", f"{TREE_LAYER}/attn/o_proj"),
    *layer_norm_rules(f"{NEOX_LAYER}.post_attention_layernorm", f"{TREE_LAYER}/mlp_norm"),
    *linear_rules(f"{NEOX_LAYER}.mlp.dense_h_to_4h", f"{TREE_LAYER}/mlp/up_proj"),
    *linear_rules(f"{NEOX_LAYER}.mlp.dense_4h_to_h", f"{TREE_LAYER}/mlp/down_proj"),
    *layer_norm_rules("gpt_neox.final_layer_norm", "final_norm"),
    rule("embed_out.weight", "lm_head/kernel", TRANSPOSE),
)
GPT_NEOX_BUFFERS = (r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)",)


# LayerNorm with biases and a plain MLP with biases, in both families.
LAYER_NORM_AND_PLAIN_MLP_READS = {
    "norm_type": fixed("layer"),
    "norm_bias": fixed(True),
    "mlp_type": fixed("plain"),
    "mlp_bias": fixed(True),
}


def d_ff_from_hf(n_inner: int | None, d_model: int) -> int:
    return n_inner or 4 * d_model


def query_scale_from_hf(scale_attn_weights: bool) -> float | None:
    return None if scale_attn_weights else 1.0


GPT2_READS = {
    "vocab_size": hf("vocab_size"),
    "d_model": hf("n_embd"),
    "n_layers": hf("n_layer"),
    "n_heads": hf("n_head"),
    "n_kv_heads": hf("n_head"),
    "head_dim": hf("n_embd", "n_head", convert=operator.floordiv),
    "d_ff": hf("n_inner", "n_embd", convert=d_ff_from_hf),
    "max_position_embeddings": hf("n_positions"),
    "position_embedding": fixed("learned"),
    "tie_embeddings": hf("tie_word_embeddings", convert=bool),
    "norm_eps": hf("layer_norm_epsilon"),
    "qkv_bias": fixed(True),
    "out_bias": fixed(True),
    "query_scale": hf("scale_attn_weights", convert=query_scale_from_hf),
    "activation": hf("activation_function", convert=activation_from_hf),
    **LAYER_NORM_AND_PLAIN_MLP_READS,
}
GPT2_KNOWN = {
    **dict.fromkeys(("attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_first_dropout"), DROPOUT),
    **dict.fromkeys(("summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels"),
                    Ignored("configures GPT2DoubleHeadsModel's multiple-choice head")),
    "n_ctx": Ignored("a legacy copy of n_positions that transformers does not read"),
    "reorder_and_upcast_attn": Ignored("it only computes attention scores in float32, as lrt_jax always does"),
    "scale_attn_by_inverse_layer_idx": Requires((False,), "scaling attention by 1 / (layer + 1) is not implemented"),
    "add_cross_attention": Requires((False,), "cross-attention (encoder-decoder use) is not implemented"),
}


def gpt2_to_hf(config: ModelConfig) -> dict:
    if config.query_scale not in (None, 1.0):
        raise refuse("gpt2", "query_scale", config.query_scale, "GPT-2 scales by head_dim**-0.5 or not at all.")
    return {
        "n_inner": config.d_ff,
        "tie_word_embeddings": config.tie_embeddings,
        "scale_attn_weights": config.query_scale is None,
        # gelu_new is GPT-2's own spelling of the tanh GELU; its torch kernel differs in the last ulp.
        "activation_function": "gelu_new" if config.activation == "gelu_tanh" else ACTIVATIONS_TO_HF[config.activation],
    }


GPT_NEOX_READS = {
    "vocab_size": hf("vocab_size"),
    "d_model": hf("hidden_size"),
    "n_layers": hf("num_hidden_layers"),
    "n_heads": hf("num_attention_heads"),
    "n_kv_heads": hf("num_attention_heads"),
    "head_dim": hf("hidden_size", "num_attention_heads", convert=operator.floordiv),
    "d_ff": hf("intermediate_size"),
    "max_position_embeddings": hf("max_position_embeddings"),
    "tie_embeddings": hf("tie_word_embeddings", convert=bool),
    "norm_eps": hf("layer_norm_eps"),
    **ATTENTION_BIAS_READS,
    **rope_reads(rope_fraction_from_hf),
    "activation": hf("hidden_act", convert=activation_from_hf),
    "parallel_residual": hf("use_parallel_residual"),
    **LAYER_NORM_AND_PLAIN_MLP_READS,
}
GPT_NEOX_KNOWN = dict.fromkeys(("hidden_dropout", "classifier_dropout"), DROPOUT)


def gpt_neox_to_hf(config: ModelConfig) -> dict:
    return {
        "tie_word_embeddings": config.tie_embeddings,
        "rope_parameters": {"partial_rotary_factor": 1.0, **rope_to_hf(config)},
        "hidden_act": ACTIVATIONS_TO_HF[config.activation],
    }


GPT_FAMILIES = (
    Family("gpt2", "GPT2LMHeadModel", GPT2_READS, GPT2_KNOWN, gpt2_to_hf, GPT2_RULES, GPT2_BUFFERS, "transformer."),
    Family("gpt_neox", "GPTNeoXForCausalLM", GPT_NEOX_READS, GPT_NEOX_KNOWN, gpt_neox_to_hf, GPT_NEOX_RULES,
           GPT_NEOX_BUFFERS),
)
