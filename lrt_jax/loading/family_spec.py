"""What a family module declares, and the config-translation helpers the families share.

A :class:`Family` bundles the two directions of the HF boundary for one ``model_type``:
the config translation (HF ``PretrainedConfig`` ⇄ :class:`ModelConfig`) and the tensor
name table (see :mod:`lrt_jax.loading.tensor_rules`). Translating *from* HF reads a
normalised transformers config object — transformers fills in defaults that hub
``config.json`` files omit and rewrites legacy fields (``rope_scaling``,
``rope_theta``, ``rotary_pct``) into today's ``rope_parameters`` — and refuses every
field that would change the computation in a way we do not implement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from lrt_jax.config import ModelConfig, RopeScaling, UnsupportedModelError
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
      config_from_hf: normalised HF config object → :class:`ModelConfig` (raises
        :class:`UnsupportedModelError` naming any field it cannot honour).
      config_to_hf: :class:`ModelConfig` → the family's ``config.json`` fields.
      tensor_rules: the name table, all layouts we read; the first row per tree path
        is the layout we write.
      ignored_tensors: regexes of non-parameter buffers that older checkpoints carry
        (causal-mask biases, ``rotary_emb.inv_freq``); they are skipped on load.
      optional_name_prefix: a prefix some checkpoints of the family omit (the original
        GPT-2 files have ``h.0...`` instead of ``transformer.h.0...``).
    """

    model_type: str
    architecture: str
    config_from_hf: Callable[[Any], ModelConfig]
    config_to_hf: Callable[[ModelConfig], dict]
    tensor_rules: tuple[TensorRule, ...]
    ignored_tensors: tuple[str, ...] = ()
    optional_name_prefix: str = ""


def refuse(model_type: str, field: str, value, why: str) -> UnsupportedModelError:
    """The error for a config field whose value changes the computation in a way we lack."""
    return UnsupportedModelError(f"{model_type}: config field {field}={value!r} is not supported: {why}")


def activation_from_hf(hf, field: str) -> str:
    name = getattr(hf, field)
    if name not in ACTIVATIONS_FROM_HF:
        raise refuse(hf.model_type, field, name, f"known activations are {sorted(ACTIVATIONS_FROM_HF)}.")
    return ACTIVATIONS_FROM_HF[name]


def head_dim_from_hf(hf) -> int:
    return getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads


def rope_from_hf(hf, *, partial_rotary_allowed: bool = False) -> dict:
    """``rope_theta``, ``rope_scaling`` and ``rope_fraction`` keyword arguments from ``hf.rope_parameters``."""
    params = dict(getattr(hf, "rope_parameters", None) or {})
    kind = params.get("rope_type", params.get("type", "default"))
    fraction = params.get("partial_rotary_factor", 1.0)
    if fraction != 1.0 and not partial_rotary_allowed:
        raise refuse(hf.model_type, "rope_parameters.partial_rotary_factor", fraction, "only gpt_neox uses partial rotary.")
    if kind == "default":
        scaling = RopeScaling()
    elif kind == "linear":
        scaling = RopeScaling(kind="linear", factor=float(params["factor"]))
    elif kind == "llama3":
        scaling = RopeScaling(
            kind="llama3",
            factor=float(params["factor"]),
            low_freq_factor=float(params["low_freq_factor"]),
            high_freq_factor=float(params["high_freq_factor"]),
            original_max_position_embeddings=int(params["original_max_position_embeddings"]),
        )
    else:
        raise refuse(hf.model_type, "rope_parameters.rope_type", kind, "implemented types are default, linear and llama3.")
    return {"rope_theta": float(params.get("rope_theta", 10000.0)), "rope_scaling": scaling, "rope_fraction": fraction}


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


def layer_types_from_hf(hf) -> tuple[str, ...] | None:
    """HF ``layer_types`` ("full_attention"/"sliding_attention") → ours, ``None`` when all full."""
    hf_types = getattr(hf, "layer_types", None)
    if not hf_types:
        return None
    names = {"full_attention": "full", "sliding_attention": "sliding"}
    unknown = sorted(set(hf_types) - set(names))
    if unknown:
        raise refuse(hf.model_type, "layer_types", unknown, "only full_attention and sliding_attention exist here.")
    ours = tuple(names[t] for t in hf_types)
    return None if all(t == "full" for t in ours) else ours


def layer_types_to_hf(config: ModelConfig) -> list[str]:
    return [f"{config.layer_type(i)}_attention" for i in range(config.n_layers)]
