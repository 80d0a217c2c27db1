"""What a family module declares, and the config converters the families' field tables share.

A :class:`Family` bundles the two directions of the HF boundary for one ``model_type``:
the config translation (HF ``PretrainedConfig`` ⇄ :class:`ModelConfig`) and the tensor
name table (see :mod:`lrt_jax.loading.tensor_rules`). Translating *from* HF reads a
normalised transformers config object — transformers fills in defaults that hub
``config.json`` files omit and rewrites legacy fields (``rope_scaling``,
``rope_theta``, ``rotary_pct``) into today's ``rope_parameters`` — through the
family's field table (:mod:`lrt_jax.loading.field_table`), which refuses every field
it does not know that is not at its default. The converters here are the ``convert``
functions of those tables; they raise :class:`Refusal` for values we cannot honour.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from lrt_jax.config import ModelConfig, RopeScaling
from lrt_jax.loading.field_table import Known, Reads, Refusal, copied_fields_to_hf, hf, model_config_from_table
from lrt_jax.loading.tensor_rules import TensorRule

# HF activation names → ours. gelu_new, gelu_fast and gelu_pytorch_tanh are all the tanh
# approximation; "gelu" is the exact erf form.
ACTIVATIONS_FROM_HF = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}
ACTIVATIONS_TO_HF = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}


@dataclasses.dataclass(frozen=True)
class Family:
    """One supported HF ``model_type``.

    Attributes:
      model_type: the HF ``model_type`` string.
      architecture: the HF class written to ``architectures`` when saving.
      reads: the field table, :class:`ModelConfig` field → where its value comes from
        (see :mod:`lrt_jax.loading.field_table`).
      known: HF fields the family does not read but knows are harmless, or implements
        only at some values; :data:`~lrt_jax.loading.field_table.BASE_KNOWN` adds the
        fields every family shares. Any other field must be at its transformers default.
      computed_to_hf: :class:`ModelConfig` → the ``config.json`` fields of the rows that
        are not plain copies (the copies are inverted from ``reads``).
      tensor_rules: the name table, all layouts we read; the first row per tree path
        is the layout we write.
      ignored_tensors: regexes of non-parameter buffers that older checkpoints carry
        (causal-mask biases, ``rotary_emb.inv_freq``); they are skipped on load.
      optional_name_prefix: a prefix some checkpoints of the family omit (the original
        GPT-2 files have ``h.0...`` instead of ``transformer.h.0...``).
    """

    model_type: str
    architecture: str
    reads: Mapping[str, Reads]
    known: Mapping[str, Known]
    computed_to_hf: Callable[[ModelConfig], dict]
    tensor_rules: tuple[TensorRule, ...]
    ignored_tensors: tuple[str, ...] = ()
    optional_name_prefix: str = ""

    def config_from_hf(self, hf_config) -> ModelConfig:
        """Normalised HF config object → :class:`ModelConfig`, refusing any field the tables do not allow."""
        return model_config_from_table(hf_config, self.model_type, self.reads, self.known)

    def config_to_hf(self, config: ModelConfig) -> dict:
        """:class:`ModelConfig` → the family's ``config.json`` fields (the caller checks the round trip)."""
        return {"model_type": self.model_type, **copied_fields_to_hf(config, self.reads), **self.computed_to_hf(config)}


def activation_from_hf(name: str) -> str:
    if name not in ACTIVATIONS_FROM_HF:
        raise Refusal(f"known activations are {sorted(ACTIVATIONS_FROM_HF)}.")
    return ACTIVATIONS_FROM_HF[name]


def head_dim_from_hf(head_dim: int | None, d_model: int, n_heads: int) -> int:
    """HF's ``head_dim`` when the config sets it, else ``d_model // n_heads``."""
    return head_dim or d_model // n_heads


def kv_heads_from_hf(n_kv_heads: int | None, n_heads: int) -> int:
    return n_kv_heads or n_heads


def rope_theta_from_hf(params: dict | None) -> float:
    return float((params or {}).get("rope_theta", 10000.0))


def rope_scaling_from_hf(params: dict | None) -> RopeScaling:
    params = params or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return RopeScaling()
    if kind == "linear":
        return RopeScaling(kind="linear", factor=float(params["factor"]))
    if kind == "llama3":
        return RopeScaling(
            kind="llama3",
            factor=float(params["factor"]),
            low_freq_factor=float(params["low_freq_factor"]),
            high_freq_factor=float(params["high_freq_factor"]),
            original_max_position_embeddings=int(params["original_max_position_embeddings"]),
        )
    raise Refusal("implemented types are default, linear and llama3.", field="rope_parameters.rope_type", value=kind)


def rope_fraction_from_hf(params: dict | None) -> float:
    """GPT-NeoX's partial rotary: the fraction of each head that RoPE rotates."""
    return float((params or {}).get("partial_rotary_factor", 1.0))


def full_rotary_from_hf(params: dict | None) -> float:
    fraction = rope_fraction_from_hf(params)
    if fraction != 1.0:
        raise Refusal("only gpt_neox uses partial rotary.", field="rope_parameters.partial_rotary_factor",
                      value=fraction)
    return fraction


def rope_reads(fraction_from_hf=full_rotary_from_hf) -> dict[str, Reads]:
    """The rows for ``rope_theta``, ``rope_scaling`` and ``rope_fraction``, all read from ``rope_parameters``."""
    return {
        "rope_theta": hf("rope_parameters", convert=rope_theta_from_hf),
        "rope_scaling": hf("rope_parameters", convert=rope_scaling_from_hf),
        "rope_fraction": hf("rope_parameters", convert=fraction_from_hf),
    }


# Llama, Qwen3, Gemma, OLMoE and GPT-NeoX put one switch on the q, k, v and o biases.
ATTENTION_BIAS_READS = {"qkv_bias": hf("attention_bias"), "out_bias": hf("attention_bias")}


def rope_to_hf(config: ModelConfig) -> dict:
    """The ``rope_parameters`` dict that :func:`rope_from_hf` reads back to ``config``'s values."""
    scaling = config.rope_scaling
    params = {"rope_type": scaling.kind, "rope_theta": config.rope_theta}
    if scaling.kind in ("linear", "llama3"):
        params["factor"] = scaling.factor
    if scaling.kind == "llama3":
        params.update(
            low_freq_factor=scaling.low_freq_factor,
            high_freq_factor=scaling.high_freq_factor,
            original_max_position_embeddings=scaling.original_max_position_embeddings,
        )
    if config.rope_fraction != 1.0:
        params["partial_rotary_factor"] = config.rope_fraction
    return params


def layer_types_from_hf(hf_types: list[str] | None) -> tuple[str, ...] | None:
    """HF ``layer_types`` ("full_attention"/"sliding_attention") → ours, ``None`` when all full."""
    if not hf_types:
        return None
    names = {"full_attention": "full", "sliding_attention": "sliding"}
    unknown = sorted(set(hf_types) - set(names))
    if unknown:
        raise Refusal("only full_attention and sliding_attention exist here.", field="layer_types", value=unknown)
    ours = tuple(names[t] for t in hf_types)
    return None if all(t == "full" for t in ours) else ours


def layer_types_to_hf(config: ModelConfig) -> list[str]:
    return [f"{config.layer_type(i)}_attention" for i in range(config.n_layers)]
