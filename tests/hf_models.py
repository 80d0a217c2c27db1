"""Tiny random HF models (transformers + PyTorch), saved as checkpoint directories.

Shared by the loading, parity, intervention and generation tests. Every family gets
a config that exercises its distinguishing features at toy size (2 layers, d_model
64, GQA where the family allows it, MoE with 4 experts and top-2, sliding windows
shorter than the test sequences, Llama-3 RoPE scaling). Weights are redrawn at a
larger scale than HF's 0.02 init so that a wrong layout changes the outputs by far
more than the test tolerance.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

# Small excerpts of the evaluation datasets, in their upstream formats, ship with the
# tests (``tests/data/README.md`` names the sources, licences and how they were cut).
TEST_DATA = Path(__file__).resolve().parent / "data"

FAMILIES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2",
    "gpt2", "gpt_neox", "mixtral", "olmoe", "qwen2_moe",
)  # fmt: skip

VOCAB_SIZE = 160
LLAMA_LIKE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    tie_word_embeddings=False,
)

TINY_CONFIGS = {
    "llama": dict(
        LLAMA_LIKE,
        rope_parameters=dict(
            rope_type="llama3",
            rope_theta=500000.0,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=64,
        ),
    ),
    "mistral": dict(LLAMA_LIKE, sliding_window=4),
    "qwen2": dict(LLAMA_LIKE, use_sliding_window=True, sliding_window=4, max_window_layers=1),
    "qwen3": dict(LLAMA_LIKE, head_dim=24),
    "gemma": dict(LLAMA_LIKE, head_dim=24, tie_word_embeddings=True),
    "gemma2": dict(
        LLAMA_LIKE,
        head_dim=16,
        tie_word_embeddings=True,
        sliding_window=4,
        query_pre_attn_scalar=24,
        attn_logit_softcapping=2.0,
        final_logit_softcapping=3.0,
    ),
    "gpt2": dict(vocab_size=VOCAB_SIZE, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=1),
    "gpt_neox": dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        rotary_pct=0.5,
    ),
    "mixtral": dict(LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2),
    "olmoe": dict(LLAMA_LIKE, num_key_value_heads=1, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, eos_token_id=1, pad_token_id=0),
    "qwen2_moe": dict(
        LLAMA_LIKE,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=48,
        norm_topk_prob=True,
    ),
}


def build_tiny_hf_model(family: str, *, seed: int = 0, weight_scale: float = 0.15, **overrides):
    """A random ``AutoModelForCausalLM`` of ``family`` in fp32 eval mode (imports torch)."""
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(family, **{**TINY_CONFIGS[family], **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            # Vectors (norm weights, biases) are perturbed around their init (1 or 0).
            if parameter.ndim == 1:
                parameter.add_(torch.randn_like(parameter) * 0.2)
            else:
                parameter.normal_(0.0, weight_scale)
    return model


def save_tiny_tokenizer(path: str | Path, vocab_size: int = VOCAB_SIZE) -> None:
    """A word-level tokenizer over ``w0 … w{n-3}`` plus ``<pad>``/``<unk>``, built offline."""
    import tokenizers
    import transformers

    vocab = {"<pad>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(vocab_size - 2)}}
    model = tokenizers.models.WordLevel(vocab, unk_token="<unk>")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")
    tokenizer.save_pretrained(str(path))


def save_tiny_hf_model(family: str, path: str | Path, *, with_tokenizer: bool = False, seed: int = 0, **overrides) -> Path:
    """Build a tiny random HF model of ``family`` and ``save_pretrained`` it (safetensors) into ``path``.

    ``overrides`` replace fields of the tiny config (any HF config field), e.g.
    ``num_hidden_layers=4``; ``max_shard_size`` is passed to ``save_pretrained``.
    """
    max_shard_size = overrides.pop("max_shard_size", None)
    model = build_tiny_hf_model(family, seed=seed, **overrides)
    path = Path(path)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(path), **kwargs)
    if with_tokenizer:
        save_tiny_tokenizer(path)
    return path


REQUIRED_TOKENS = ("<pad>", "<unk>", "<eos>", "(", ")", ":", "?", ".", ",", "####", "Question", "Answer", "Choices",
                   "Yes", "No", "A", "B", *"0123456789")
_PRE_TOKENS = re.compile(r"\w+|[^\w\s]+")


def save_word_tokenizer(directory, texts=(), vocab_size: int = VOCAB_SIZE) -> None:
    """A WordLevel tokenizer over :data:`REQUIRED_TOKENS` plus the most frequent words of ``texts``."""
    import tokenizers
    import transformers

    counts = collections.Counter(token for text in texts for token in _PRE_TOKENS.findall(text))
    vocab = list(REQUIRED_TOKENS)
    vocab += [token for token, _ in counts.most_common() if token not in REQUIRED_TOKENS][: vocab_size - len(vocab)]
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                                     eos_token="<eos>")
    tokenizer.save_pretrained(str(directory))
