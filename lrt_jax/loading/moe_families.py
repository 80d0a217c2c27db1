"""Mixture-of-experts families: mixtral, olmoe, qwen2_moe.

Attention is llama-style (OLMoE adds QK-norm over all heads, Qwen2-MoE q/k/v biases);
the MLP is a top-k router over ``n_experts`` gated experts, plus for Qwen2-MoE a shared
expert scaled by ``sigmoid(x · w)``.

Expert weights exist in two on-disk layouts and we read both:

* per expert (what hub checkpoints contain and what transformers 5 still writes on
  ``save_pretrained``): Mixtral ``block_sparse_moe.experts.{j}.w1/w3/w2`` (gate, up,
  down), OLMoE/Qwen2-MoE ``mlp.experts.{j}.gate_proj/up_proj/down_proj``, each a torch
  ``[out, in]`` weight — stacked here into ``[n_experts, in, out]``;
* fused (transformers 5's in-memory ``state_dict``): ``mlp.experts.gate_up_proj``
  ``[n_experts, 2 * moe_d_ff, d_model]`` (gate rows first) and ``mlp.experts.down_proj``
  ``[n_experts, d_model, moe_d_ff]``, with the router at ``mlp.gate.weight``.

We write the per-expert layout, which every transformers version reads.
"""

from __future__ import annotations

from lrt_jax.config import ModelConfig
from lrt_jax.loading.family_spec import ATTENTION_BIAS_READS, Family
from lrt_jax.loading.field_table import TRAINING_ONLY, Requires, fixed, hf, refuse
from lrt_jax.loading.llama_families import (
    ATTENTION_RULES,
    EMBEDDING_AND_HEAD_RULES,
    LAYER,
    LLAMA_LIKE_READS,
    QWEN_SLIDING_KNOWN,
    SLIDING_EVERYWHERE_READS,
    SLIDING_PER_LAYER_READS,
    TREE_LAYER,
    gated_mlp_rules,
    llama_like_hf_fields,
    sliding_everywhere_to_hf,
    sliding_per_layer_to_hf,
)
from lrt_jax.loading.tensor_rules import SPLIT_FUSED_GATE_UP, TRANSPOSE, rule

MOE = f"{TREE_LAYER}/moe"

FUSED_EXPERT_RULES = (
    rule(f"{LAYER}.mlp.gate.weight", f"{MOE}/router/kernel", TRANSPOSE, load_only=True),
    rule(f"{LAYER}.mlp.experts.gate_up_proj", (f"{MOE}/gate_proj", f"{MOE}/up_proj"), SPLIT_FUSED_GATE_UP, True),
    rule(f"{LAYER}.mlp.experts.down_proj", f"{MOE}/down_proj", TRANSPOSE, load_only=True),
)

MIXTRAL_RULES = (
    *EMBEDDING_AND_HEAD_RULES,
    *ATTENTION_RULES,
    rule(f"{LAYER}.post_attention_layernorm.weight", f"{TREE_LAYER}/mlp_norm/scale"),
    rule(f"{LAYER}.block_sparse_moe.gate.weight", f"{MOE}/router/kernel", TRANSPOSE),
    rule(f"{LAYER}.block_sparse_moe.experts.{{expert}}.w1.weight", f"{MOE}/gate_proj", TRANSPOSE),
    rule(f"{LAYER}.block_sparse_moe.experts.{{expert}}.w3.weight", f"{MOE}/up_proj", TRANSPOSE),
    rule(f"{LAYER}.block_sparse_moe.experts.{{expert}}.w2.weight", f"{MOE}/down_proj", TRANSPOSE),
    *FUSED_EXPERT_RULES,
)

QWEN_STYLE_MOE_RULES = (
    *EMBEDDING_AND_HEAD_RULES,
    *ATTENTION_RULES,
    rule(f"{LAYER}.post_attention_layernorm.weight", f"{TREE_LAYER}/mlp_norm/scale"),
    rule(f"{LAYER}.mlp.gate.weight", f"{MOE}/router/kernel", TRANSPOSE),
    *(
        rule(f"{LAYER}.mlp.experts.{{expert}}.{proj}.weight", f"{MOE}/{proj}", TRANSPOSE)
        for proj in ("gate_proj", "up_proj", "down_proj")
    ),
    *gated_mlp_rules(f"{LAYER}.mlp.shared_expert", f"{MOE}/shared"),
    rule(f"{LAYER}.mlp.shared_expert_gate.weight", f"{MOE}/shared_gate/kernel", TRANSPOSE),
    # A Qwen2-MoE config with num_experts == 0 is dense.
    *gated_mlp_rules(f"{LAYER}.mlp", f"{TREE_LAYER}/mlp"),
    *FUSED_EXPERT_RULES[1:],
)


# The router's training-time knobs: the auxiliary load-balancing loss and jitter noise.
ROUTER_TRAINING_KNOWN = dict.fromkeys(("router_aux_loss_coef", "output_router_logits", "router_jitter_noise"),
                                      TRAINING_ONLY)
EXPERT_READS = {"n_experts": hf("num_experts"), "top_k": hf("num_experts_per_tok"),
                "norm_topk_prob": hf("norm_topk_prob")}

MIXTRAL_READS = {
    **LLAMA_LIKE_READS,
    **SLIDING_EVERYWHERE_READS,
    "n_experts": hf("num_local_experts"),
    "top_k": hf("num_experts_per_tok"),
    "moe_d_ff": hf("intermediate_size"),
    "norm_topk_prob": fixed(True),
}


def mixtral_to_hf(config: ModelConfig) -> dict:
    if not config.norm_topk_prob:
        raise refuse("mixtral", "norm_topk_prob", False, "Mixtral always renormalises the top-k weights.")
    return {**llama_like_hf_fields(config), **sliding_everywhere_to_hf(config)}


OLMOE_READS = {
    **LLAMA_LIKE_READS,
    **ATTENTION_BIAS_READS,
    "qk_norm": fixed("full"),
    **EXPERT_READS,
    "moe_d_ff": hf("intermediate_size"),
}
OLMOE_KNOWN = {**ROUTER_TRAINING_KNOWN, "clip_qkv": Requires((None,), "clipping q, k and v is not implemented")}


def top_k_if_sparse(top_k: int, n_experts: int) -> int:
    """A Qwen2-MoE config with ``num_experts == 0`` is dense, whatever ``num_experts_per_tok`` says."""
    return top_k if n_experts else 0


EVERY_LAYER_MOE = "dense MLP layers among the MoE layers are not implemented"
QWEN2_MOE_READS = {
    **LLAMA_LIKE_READS,
    "qkv_bias": hf("qkv_bias"),
    **SLIDING_PER_LAYER_READS,
    **EXPERT_READS,
    "top_k": hf("num_experts_per_tok", "num_experts", convert=top_k_if_sparse),
    "moe_d_ff": hf("moe_intermediate_size"),
    "shared_expert_d_ff": hf("shared_expert_intermediate_size"),
}
QWEN2_MOE_KNOWN = {
    **ROUTER_TRAINING_KNOWN,
    **QWEN_SLIDING_KNOWN,
    "mlp_only_layers": Requires(([], None), EVERY_LAYER_MOE),
    "decoder_sparse_step": Requires((1,), EVERY_LAYER_MOE),
}


def qwen2_moe_to_hf(config: ModelConfig) -> dict:
    return {
        **llama_like_hf_fields(config),
        **sliding_per_layer_to_hf(config),
        "num_experts_per_tok": config.top_k,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    }


MOE_FAMILIES = (
    Family("mixtral", "MixtralForCausalLM", MIXTRAL_READS, ROUTER_TRAINING_KNOWN, mixtral_to_hf, MIXTRAL_RULES),
    Family("olmoe", "OlmoeForCausalLM", OLMOE_READS, OLMOE_KNOWN, llama_like_hf_fields, QWEN_STYLE_MOE_RULES),
    Family("qwen2_moe", "Qwen2MoeForCausalLM", QWEN2_MOE_READS, QWEN2_MOE_KNOWN, qwen2_moe_to_hf,
           QWEN_STYLE_MOE_RULES),
)
