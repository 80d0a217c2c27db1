"""The HF config allowlist: fields outside the family's table must sit at their transformers default.

The references are transformers itself (its config classes' defaults and the normalised
values it hands its own PyTorch models), hand-written expectations of which HF field
feeds which ModelConfig field, and published hub ``config.json`` files.
"""

from __future__ import annotations

import dataclasses
import math

import hf_models
import pytest
import transformers

from lrt_jax.config import RopeScaling, UnsupportedModelError
from lrt_jax.loading import config_from_hf, hf_config_from_model_config
from lrt_jax.loading.hf_config import FAMILIES

LLAMA_LIKE_COPIES = {
    "vocab_size": "vocab_size",
    "d_model": "hidden_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "d_ff": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "norm_eps": "rms_norm_eps",
}
ATTENTION_BIAS = {"qkv_bias": "attention_bias", "out_bias": "attention_bias"}
# ModelConfig field → the HF field whose value it takes unchanged, written out by hand from the
# transformers modelling code (e.g. Qwen2 hard-codes its biases, Mixtral's experts are intermediate_size wide).
EXPECTED_COPIES = {
    "llama": {**LLAMA_LIKE_COPIES, **ATTENTION_BIAS, "mlp_bias": "mlp_bias"},
    "mistral": LLAMA_LIKE_COPIES,
    "qwen2": LLAMA_LIKE_COPIES,
    "qwen3": {**LLAMA_LIKE_COPIES, **ATTENTION_BIAS},
    "gemma": {**LLAMA_LIKE_COPIES, **ATTENTION_BIAS},
    "gemma2": {**LLAMA_LIKE_COPIES, **ATTENTION_BIAS, "attn_logit_softcap": "attn_logit_softcapping",
               "final_logit_softcap": "final_logit_softcapping"},
    "gpt2": {"vocab_size": "vocab_size", "d_model": "n_embd", "n_layers": "n_layer", "n_heads": "n_head",
             "n_kv_heads": "n_head", "max_position_embeddings": "n_positions", "norm_eps": "layer_norm_epsilon"},
    "gpt_neox": {**LLAMA_LIKE_COPIES, **ATTENTION_BIAS, "n_kv_heads": "num_attention_heads",
                 "norm_eps": "layer_norm_eps", "parallel_residual": "use_parallel_residual"},
    "mixtral": {**LLAMA_LIKE_COPIES, "n_experts": "num_local_experts", "top_k": "num_experts_per_tok",
                "moe_d_ff": "intermediate_size"},
    "olmoe": {**LLAMA_LIKE_COPIES, **ATTENTION_BIAS, "n_experts": "num_experts", "top_k": "num_experts_per_tok",
              "moe_d_ff": "intermediate_size", "norm_topk_prob": "norm_topk_prob"},
    "qwen2_moe": {**LLAMA_LIKE_COPIES, "n_experts": "num_experts", "qkv_bias": "qkv_bias",
                  "moe_d_ff": "moe_intermediate_size", "norm_topk_prob": "norm_topk_prob",
                  "shared_expert_d_ff": "shared_expert_intermediate_size"},
}
# Overrides that give every integer field its own value, so a field wired to the wrong source shows.
DISTINCT = {"num_hidden_layers": 3, "max_position_embeddings": 112, "rms_norm_eps": 3e-6}
DISTINCT_BY_FAMILY = {
    "gpt2": {"n_layer": 3, "n_positions": 48, "layer_norm_epsilon": 3e-6},
    "gpt_neox": {"num_hidden_layers": 3, "max_position_embeddings": 112, "layer_norm_eps": 3e-6},
    "mixtral": {**DISTINCT, "num_local_experts": 5},
    "olmoe": {**DISTINCT, "num_experts": 5},
    "qwen2_moe": {**DISTINCT, "num_experts": 5},
}


def tiny_hf_dict(family: str, **overrides) -> dict:
    return {"model_type": family, **hf_models.TINY_CONFIGS[family], **overrides}


def distinct_hf_dict(family: str) -> dict:
    return tiny_hf_dict(family, **DISTINCT_BY_FAMILY.get(family, DISTINCT))


def normalised(hf_dict: dict):
    return transformers.AutoConfig.for_model(**hf_dict)


@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_a_config_with_every_field_at_its_default_translates(family):
    config = config_from_hf({"model_type": family})
    defaults = normalised({"model_type": family})
    assert config.model_type == family
    for ours, theirs in EXPECTED_COPIES[family].items():
        assert getattr(config, ours) == getattr(defaults, theirs), theirs


@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_the_config_json_transformers_writes_for_each_tiny_model_translates(family):
    written = normalised(tiny_hf_dict(family)).to_dict()  # what save_pretrained puts in config.json
    assert config_from_hf(written) == config_from_hf(tiny_hf_dict(family))


@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_every_field_the_table_copies_carries_the_hf_value(family):
    hf_dict = distinct_hf_dict(family)
    config, hf = config_from_hf(hf_dict), normalised(hf_dict)
    for ours, theirs in EXPECTED_COPIES[family].items():
        assert getattr(config, ours) == getattr(hf, theirs), theirs
    sources = set(EXPECTED_COPIES[family].values())
    integers = [getattr(hf, f) for f in sources if type(getattr(hf, f)) is int]
    assert len(integers) == len(set(integers)), "the test config must tell its integer fields apart"
    copied = {name: row.sources[0] for name, row in FAMILIES[family].reads.items()
              if len(row.sources) == 1 and row.convert is None}
    assert copied == EXPECTED_COPIES[family]


@pytest.mark.parametrize(
    "family, overrides, expected",
    [
        ("llama", dict(num_key_value_heads=None), dict(n_kv_heads=4)),
        ("llama", dict(attention_bias=True, head_dim=8), dict(qkv_bias=True, out_bias=True, head_dim=8)),
        ("llama", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
         dict(rope_scaling=RopeScaling("linear", 2.0), rope_theta=1e4)),
        ("qwen2", dict(), dict(head_dim=16, qkv_bias=True, out_bias=False)),
        ("qwen2", dict(use_sliding_window=False), dict(layer_types=None, sliding_window=None)),
        ("qwen3", dict(attention_bias=True), dict(qkv_bias=True, out_bias=True)),
        ("mistral", dict(sliding_window=None), dict(layer_types=None, sliding_window=None)),
        # transformers rewrites Gemma's legacy hidden_act="gelu" to the tanh form; Gemma-2 reads hidden_activation.
        ("gemma", dict(hidden_size=96, hidden_act="gelu"), dict(embedding_scale=math.sqrt(96), activation="gelu_tanh")),
        ("gemma2", dict(query_pre_attn_scalar=64, hidden_activation="gelu"),
         dict(query_scale=0.125, activation="gelu")),
        ("gpt2", dict(n_inner=100, scale_attn_weights=False, tie_word_embeddings=False),
         dict(d_ff=100, query_scale=1.0, head_dim=16, tie_embeddings=False)),
        ("gpt_neox", dict(attention_bias=False, rotary_pct=0.25),
         dict(qkv_bias=False, out_bias=False, rope_fraction=0.25)),
        ("mixtral", dict(intermediate_size=40), dict(d_ff=40, moe_d_ff=40, norm_topk_prob=True)),
        ("olmoe", dict(attention_bias=True), dict(qkv_bias=True, out_bias=True, qk_norm="full")),
        ("qwen2_moe", dict(num_experts=0), dict(n_experts=0, top_k=0)),
    ],
)
def test_computed_fields_follow_their_hf_sources(family, overrides, expected):
    config = config_from_hf(tiny_hf_dict(family, **overrides))
    assert {name: getattr(config, name) for name in expected} == pytest.approx(expected)


@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_a_made_up_field_is_refused_with_its_value_default_and_model_type(family):
    with pytest.raises(UnsupportedModelError) as error:
        config_from_hf(tiny_hf_dict(family, shiny_new_attention=4))
    message = str(error.value)
    assert message.startswith(f"{family}: config field shiny_new_attention=4 is not implemented by lrt_jax")
    assert "has no such field" in message and "would compute something else" in message
    assert config_from_hf(tiny_hf_dict(family, shiny_new_attention=None)) == config_from_hf(tiny_hf_dict(family))


@pytest.mark.parametrize("family", hf_models.FAMILIES)
@pytest.mark.parametrize("field, value", [("use_cache", False), ("initializer_range", 0.5), ("attention_dropout", 0.3),
                                          ("bos_token_id", 7), ("output_hidden_states", True)])
def test_harmless_fields_may_take_any_value(family, field, value):
    assert config_from_hf(tiny_hf_dict(family, **{field: value})) == config_from_hf(tiny_hf_dict(family))


@pytest.mark.parametrize(
    "family, field, refused, allowed",
    [
        ("gemma", "use_bidirectional_attention", True, False),
        ("gemma2", "use_bidirectional_attention", True, None),
        ("gpt2", "scale_attn_by_inverse_layer_idx", True, False),
        ("gpt2", "add_cross_attention", True, False),
        ("olmoe", "clip_qkv", 8.0, None),
        ("qwen2_moe", "decoder_sparse_step", 2, 1),
        ("qwen2_moe", "mlp_only_layers", [0], []),
        ("qwen2", "use_mrope", True, False),
        ("llama", "quantization_config", {"quant_method": "gptq", "bits": 4}, None),
        ("mistral", "pruned_heads", {"0": [1]}, {}),
    ],
)
def test_fields_implemented_at_one_value_are_refused_at_others(family, field, refused, allowed):
    with pytest.raises(UnsupportedModelError, match=rf"^{family}: config field {field}=.* is not supported: "
                                                    rf"lrt_jax implements only {field}="):
        config_from_hf(tiny_hf_dict(family, **{field: refused}))
    assert config_from_hf(tiny_hf_dict(family, **{field: allowed})) == config_from_hf(tiny_hf_dict(family))


@pytest.mark.parametrize(
    "family, field, value, default",
    [
        ("llama", "attn_logit_softcapping", 50.0, None),  # a Gemma-2 field in a Llama config
        ("gpt_neox", "head_dim", 32, None),  # transformers' GPT-NeoX would read it; our table does not
        ("qwen2", "attention_bias", True, None),  # Qwen2 hard-codes its biases and ignores this field
    ],
)
def test_fields_of_other_families_are_refused(family, field, value, default):
    with pytest.raises(UnsupportedModelError, match=rf"^{family}: config field {field}={value!r} is not implemented"):
        config_from_hf(tiny_hf_dict(family, **{field: value}))


def test_a_non_default_class_field_outside_the_table_names_the_default(monkeypatch):
    olmoe = FAMILIES["olmoe"]
    without_clip_qkv = {name: entry for name, entry in olmoe.known.items() if name != "clip_qkv"}
    monkeypatch.setitem(FAMILIES, "olmoe", dataclasses.replace(olmoe, known=without_clip_qkv))
    with pytest.raises(UnsupportedModelError,
                       match=r"^olmoe: config field clip_qkv=8\.0 .*\(the transformers OlmoeConfig default is None\)"):
        config_from_hf(tiny_hf_dict("olmoe", clip_qkv=8.0))


@pytest.mark.parametrize("family, changes, field", [
    ("llama", dict(out_bias=True), "attention_bias"),
    ("mixtral", dict(moe_d_ff=32), "intermediate_size"),
    ("gpt2", dict(n_kv_heads=2), "n_head"),
])
def test_saving_refuses_two_fields_that_one_hf_field_stores(family, changes, field):
    config = config_from_hf(tiny_hf_dict(family)).replace(**changes)
    with pytest.raises(UnsupportedModelError, match=rf"cannot express this model: .* are both stored as {field}\."):
        hf_config_from_model_config(config)


# Published config.json files, verbatim (legacy fields included), from the hub repositories named.
HUB_CONFIGS = {
    "google/gemma-2-2b": {
        "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 107],
        "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "initializer_range": 0.02,
        "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 8,
        "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0, "query_pre_attn_scalar": 256,
        "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096, "torch_dtype": "float32",
        "transformers_version": "4.42.4", "use_cache": True, "vocab_size": 256000,
    },
    "google/gemma-2b": {
        "architectures": ["GemmaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 2,
        "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 16384, "max_position_embeddings": 8192,
        "model_type": "gemma", "num_attention_heads": 8, "num_hidden_layers": 18, "num_key_value_heads": 1,
        "pad_token_id": 0, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 10000.0,
        "torch_dtype": "bfloat16", "transformers_version": "4.38.0.dev0", "use_cache": True, "vocab_size": 256000,
    },
    "openai-community/gpt2": {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12,
        "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": None, "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}}, "vocab_size": 50257,
    },
    "EleutherAI/pythia-70m": {
        "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu",
        "hidden_size": 512, "initializer_range": 0.02, "intermediate_size": 2048, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 2048, "model_type": "gpt_neox", "num_attention_heads": 8, "num_hidden_layers": 6,
        "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False, "torch_dtype": "float16",
        "transformers_version": "4.24.0", "use_cache": True, "use_parallel_residual": True, "vocab_size": 50304,
    },
    "Qwen/Qwen2.5-0.5B": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
        "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2",
        "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.40.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
        "use_mrope": False, "rope_scaling": None,
    },
    "meta-llama/Llama-3.2-1B": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
    },
    "mistralai/Mixtral-8x7B-v0.1": {
        "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
        "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
        "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
        "output_router_logits": False, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
        "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.36.0.dev0", "use_cache": True, "vocab_size": 32000,
    },
    "Qwen/Qwen1.5-MoE-A2.7B": {
        "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "decoder_sparse_step": 1, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192,
        "max_window_layers": 21, "model_type": "qwen2_moe", "moe_intermediate_size": 1408, "norm_topk_prob": False,
        "num_attention_heads": 16, "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24,
        "num_key_value_heads": 16, "output_router_logits": False, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.001, "shared_expert_intermediate_size": 5632, "sliding_window": 32768,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.39.0.dev0",
        "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
    },
}  # fmt: skip


@pytest.mark.parametrize("repo", HUB_CONFIGS)
def test_published_hub_configs_pass_the_allowlist(repo):
    hf_dict = HUB_CONFIGS[repo]
    config, hf = config_from_hf(hf_dict), normalised(hf_dict)
    assert config.model_type == hf_dict["model_type"]
    for ours, theirs in EXPECTED_COPIES[hf_dict["model_type"]].items():
        assert getattr(config, ours) == getattr(hf, theirs), theirs
