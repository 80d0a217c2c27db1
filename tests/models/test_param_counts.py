"""Full-size configs give the published parameter counts, computed with ``jax.eval_shape`` (no allocation).

The published numbers are cross-checked against transformers building the same
configs on PyTorch's ``meta`` device (shapes only), so a test failure says which side
is off.
"""

from __future__ import annotations

import math

import pytest

from lrt_jax.loading import config_from_hf
from lrt_jax.loading.tree_mapping import expected_param_shapes

FULL_SIZE_CONFIGS = {
    "Llama-3-8B": {
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    },
    "Gemma-2-9B": {
        "model_type": "gemma2", "vocab_size": 256000, "hidden_size": 3584, "intermediate_size": 14336,
        "num_hidden_layers": 42, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
        "query_pre_attn_scalar": 256, "sliding_window": 4096, "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0, "max_position_embeddings": 8192, "hidden_activation": "gelu_pytorch_tanh",
    },
    "Mixtral-8x7B": {
        "model_type": "mixtral", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
        "num_experts_per_tok": 2, "max_position_embeddings": 32768, "rope_theta": 1e6, "sliding_window": None,
    },
    "Pythia-1.4B": {
        "model_type": "gpt_neox", "vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 24, "num_attention_heads": 16, "rotary_pct": 0.25, "max_position_embeddings": 2048,
        "use_parallel_residual": True, "tie_word_embeddings": False,
    },
}  # fmt: skip

PUBLISHED_COUNTS = {
    "Llama-3-8B": 8_030_261_248,
    "Gemma-2-9B": 9_241_705_984,
    "Mixtral-8x7B": 46_702_792_704,
    "Pythia-1.4B": 1_414_647_808,
}


@pytest.mark.parametrize("name", FULL_SIZE_CONFIGS)
def test_eval_shape_gives_the_published_parameter_count(name):
    shapes = expected_param_shapes(config_from_hf(FULL_SIZE_CONFIGS[name]))
    assert sum(math.prod(shape) for shape in shapes.values()) == PUBLISHED_COUNTS[name]


@pytest.mark.parametrize("name", FULL_SIZE_CONFIGS)
def test_published_count_agrees_with_transformers_on_the_meta_device(name):
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(**FULL_SIZE_CONFIGS[name])
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_COUNTS[name]


PUBLISHED_PLAN_COUNTS = {  # from the model cards / safetensors index totals on the hub
    "gemma-2-2b": 2_614_341_888,
    "gemma-2-9b": 9_241_705_984,
    "llama-3.1-8b": 8_030_261_248,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
    "olmoe-1b-7b": 6_919_161_856,
    "qwen1.5-moe-a2.7b": 14_315_784_192,
}


@pytest.mark.parametrize("name", PUBLISHED_PLAN_COUNTS)
def test_planner_configs_give_the_published_counts_in_jax_and_transformers(name):
    import torch
    import transformers

    from lrt_jax.parallel.published import PUBLISHED_CONFIGS, published_config

    shapes = expected_param_shapes(published_config(name))
    assert sum(math.prod(shape) for shape in shapes.values()) == PUBLISHED_PLAN_COUNTS[name]
    config = transformers.AutoConfig.for_model(**PUBLISHED_CONFIGS[name])
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PLAN_COUNTS[name]


def test_an_unknown_published_name_lists_the_known_ones():
    from lrt_jax.parallel.published import published_config

    with pytest.raises(ValueError, match="gemma-2-9b"):
        published_config("gpt-5")
