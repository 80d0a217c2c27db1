"""The architecture fields of published checkpoints' ``config.json``, for planning without a download.

``lrt-jax plan --config gemma-2-9b`` (or :func:`published_config`) compiles against
these the way it would against the checkpoint's own file. Only the fields that shape
the computation are kept (no tokenizer ids, no training settings); each is copied from
the model's ``config.json`` on the Hugging Face hub, and tests check the parameter
counts against transformers building the same configs on PyTorch's ``meta`` device.
"""

from __future__ import annotations

from lrt_jax.config import ModelConfig

__all__ = ["PUBLISHED_CONFIGS", "published_config"]

_LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=500000.0,
                 tie_word_embeddings=False)

PUBLISHED_CONFIGS: dict[str, dict] = {
    "gemma-2-2b": dict(model_type="gemma2", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                       num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                       query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0,
                       final_logit_softcapping=30.0, max_position_embeddings=8192,
                       hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=10000.0),
    "gemma-2-9b": dict(model_type="gemma2", vocab_size=256000, hidden_size=3584, intermediate_size=14336,
                       num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                       query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0,
                       final_logit_softcapping=30.0, max_position_embeddings=8192,
                       hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=10000.0),
    "llama-3.1-8b": dict(model_type="llama", **_LLAMA_8B, max_position_embeddings=131072,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "mistral-7b": dict(model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096,
                       tie_word_embeddings=False),
    "mixtral-8x7b": dict(model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, num_local_experts=8,
                         num_experts_per_tok=2, max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=1e6,
                         sliding_window=None, tie_word_embeddings=False),
    "olmoe-1b-7b": dict(model_type="olmoe", vocab_size=50304, hidden_size=2048, intermediate_size=1024,
                        num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16, num_experts=64,
                        num_experts_per_tok=8, norm_topk_prob=False, max_position_embeddings=4096,
                        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False),
    "qwen1.5-moe-a2.7b": dict(model_type="qwen2_moe", vocab_size=151936, hidden_size=2048, intermediate_size=5632,
                              moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
                              num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16, num_experts=60,
                              num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1,
                              max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=1e6,
                              use_sliding_window=False, tie_word_embeddings=False),
}


def published_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a published model by its name in :data:`PUBLISHED_CONFIGS`."""
    from lrt_jax.loading import config_from_hf

    key = name.lower()
    if key not in PUBLISHED_CONFIGS:
        raise ValueError(f"{name!r} is not a published config here; choose one of {', '.join(PUBLISHED_CONFIGS)}, "
                         f"or give a config.json / checkpoint directory.")
    return config_from_hf(PUBLISHED_CONFIGS[key])
