"""HF config.json → ModelConfig translation, its inverse, and refusals of unimplemented fields."""

from __future__ import annotations

import math

import hf_models
import pytest

from lrt_jax.config import RopeScaling, UnsupportedModelError
from lrt_jax.loading import config_from_hf, hf_config_from_model_config


def tiny_hf_dict(family: str, **overrides) -> dict:
    return {"model_type": family, **hf_models.TINY_CONFIGS[family], **overrides}


@pytest.mark.parametrize(
    "family, expected",
    [
        ("llama", dict(rope_theta=500000.0, rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 64), n_kv_heads=2)),
        ("mistral", dict(sliding_window=4, layer_types=("sliding", "sliding"))),
        ("qwen2", dict(qkv_bias=True, out_bias=False, sliding_window=4, layer_types=("full", "sliding"))),
        ("qwen3", dict(qk_norm="head", head_dim=24, layer_types=None)),
        ("gemma", dict(embedding_scale=8.0, norm_offset=1.0, tie_embeddings=True, activation="gelu_tanh")),
        (
            "gemma2",
            dict(
                query_scale=24**-0.5,
                attn_logit_softcap=2.0,
                final_logit_softcap=3.0,
                post_attn_norm=True,
                post_mlp_norm=True,
                layer_types=("sliding", "full"),
            ),
        ),
        (
            "gpt2",
            dict(position_embedding="learned", norm_type="layer", norm_bias=True, mlp_type="plain", d_ff=256,
                 activation="gelu_tanh", qkv_bias=True, out_bias=True, mlp_bias=True, tie_embeddings=True),
        ),
        ("gpt_neox", dict(parallel_residual=True, rope_fraction=0.5, norm_eps=1e-5, activation="gelu", qkv_bias=True)),
        ("mixtral", dict(n_experts=4, top_k=2, moe_d_ff=96, norm_topk_prob=True, sliding_window=None)),
        ("olmoe", dict(qk_norm="full", n_kv_heads=1, norm_topk_prob=False)),
        ("qwen2_moe", dict(moe_d_ff=32, shared_expert_d_ff=48, qkv_bias=True, norm_topk_prob=True)),
    ],
)
def test_tiny_configs_translate_to_the_expected_flags(family, expected):
    config = config_from_hf(tiny_hf_dict(family))
    assert config.model_type == family and config.n_layers == 2 and config.d_model == 64
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_hf_config_from_model_config_reads_back_to_the_same_config(family):
    config = config_from_hf(tiny_hf_dict(family))
    assert config_from_hf(hf_config_from_model_config(config)) == config


def test_legacy_rope_fields_are_normalised():
    config = config_from_hf(
        tiny_hf_dict(
            "llama",
            rope_parameters=None,
            rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        )
    )
    assert config.rope_theta == 500000.0 and config.rope_scaling.kind == "llama3"
    neox = config_from_hf({"model_type": "gpt_neox", "rotary_pct": 0.25, "rotary_emb_base": 10000})
    assert neox.rope_fraction == 0.25 and neox.rotary_dim == neox.head_dim // 4


def test_gemma_embedding_scale_is_sqrt_d_model():
    assert config_from_hf(tiny_hf_dict("gemma", hidden_size=96)).embedding_scale == math.sqrt(96)


@pytest.mark.parametrize(
    "family, overrides, field",
    [
        ("llama", dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}), "rope_type"),
        ("llama", dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}), "rope_type"),
        ("llama", dict(attn_logit_softcapping=50.0), "attn_logit_softcapping"),
        ("mistral", dict(final_logit_softcapping=30.0), "final_logit_softcapping"),
        ("llama", dict(hidden_act="gelu_10"), "hidden_act"),
        ("gemma", dict(use_bidirectional_attention=True), "use_bidirectional_attention"),
        ("gpt2", dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
        ("gpt2", dict(add_cross_attention=True), "add_cross_attention"),
        ("olmoe", dict(clip_qkv=8.0), "clip_qkv"),
        ("qwen2_moe", dict(mlp_only_layers=[1]), "mlp_only_layers"),
        ("qwen2_moe", dict(decoder_sparse_step=2), "decoder_sparse_step"),
        ("qwen2", dict(layer_types=["full_attention", "chunked_attention"]), "layer_types"),
        ("qwen2", dict(use_sliding_window=False, layer_types=["full_attention", "sliding_attention"]), "layer_types"),
    ],
)
def test_unimplemented_fields_are_refused_by_name(family, overrides, field):
    with pytest.raises(UnsupportedModelError, match=field):
        config_from_hf(tiny_hf_dict(family, **overrides))


def test_unknown_model_type_lists_the_supported_ones():
    with pytest.raises(UnsupportedModelError, match="'bert'.*supported types are"):
        config_from_hf({"model_type": "bert"})


def test_saving_refuses_flags_the_family_cannot_express():
    config = config_from_hf(tiny_hf_dict("llama")).replace(post_attn_norm=True)
    with pytest.raises(UnsupportedModelError, match="post_attn_norm"):
        hf_config_from_model_config(config)
