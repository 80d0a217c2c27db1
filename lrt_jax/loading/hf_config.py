"""Translate HF ``config.json`` dicts to :class:`ModelConfig` and back.

``config_from_hf`` first lets transformers normalise the dict (its config classes fill
in defaults that hub files omit and rewrite legacy fields such as ``rope_scaling`` and
``rotary_pct`` into ``rope_parameters``), then hands it to the family's translator,
which refuses fields it does not implement. ``hf_config_from_model_config`` is the
inverse used when saving; it checks that the written dict reads back to the same
config, so a model whose flags a family cannot express is refused rather than saved
wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping

import transformers
from huggingface_hub.errors import StrictDataclassError

from lrt_jax.config import ModelConfig, UnsupportedModelError
from lrt_jax.loading.family_spec import Family
from lrt_jax.loading.gpt_families import GPT_FAMILIES
from lrt_jax.loading.llama_families import LLAMA_FAMILIES
from lrt_jax.loading.moe_families import MOE_FAMILIES

FAMILIES: dict[str, Family] = {f.model_type: f for f in (*LLAMA_FAMILIES, *MOE_FAMILIES, *GPT_FAMILIES)}


def family_for(model_type: str | None) -> Family:
    """The :class:`Family` of an HF ``model_type``; raises for types we do not support."""
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"model_type={model_type!r} is not supported; supported types are {sorted(FAMILIES)}."
        )
    return FAMILIES[model_type]


def config_from_hf(hf_config: Mapping) -> ModelConfig:
    """Translate an HF ``config.json`` dict into a :class:`ModelConfig`.

    Args:
      hf_config: the parsed ``config.json`` (must contain ``model_type``).

    Returns:
      The frozen config that :class:`~lrt_jax.model.Decoder` computes exactly.

    Raises:
      UnsupportedModelError: unknown ``model_type``, or a field that changes the
        computation in a way lrt_jax does not implement (the message names the field).

    Example::

      config = config_from_hf(json.load(open("gemma-2-9b/config.json")))
    """
    family = family_for(hf_config.get("model_type"))
    check_stored_dtype(hf_config)
    try:
        normalised = transformers.AutoConfig.for_model(**dict(hf_config))
    except (TypeError, ValueError, KeyError, StrictDataclassError) as error:
        raise UnsupportedModelError(f"transformers rejects this {family.model_type} config: {error}") from error
    return family.config_from_hf(normalised)


STORED_DTYPES = ("float32", "float16", "bfloat16", "float64")


def check_stored_dtype(hf_config: Mapping) -> None:
    """Refuse a ``dtype``/``torch_dtype`` field that names no floating dtype transformers stores weights in."""
    for field in ("dtype", "torch_dtype"):
        value = hf_config.get(field)
        if value is not None and value != "auto" and str(value).removeprefix("torch.") not in STORED_DTYPES:
            raise UnsupportedModelError(
                f"config field {field}={value!r} is not a weight dtype lrt_jax reads; expected one of "
                f"{list(STORED_DTYPES)} (or remove the field).")


def hf_config_from_model_config(config: ModelConfig) -> dict:
    """The ``config.json`` dict of ``config``'s family, verified to translate back to ``config``."""
    family = family_for(config.model_type)
    hf_config = {"architectures": [family.architecture], **family.config_to_hf(config)}
    round_trip = config_from_hf(hf_config)
    if round_trip != config:
        differing = {
            name: (getattr(config, name), getattr(round_trip, name))
            for name in config.__dataclass_fields__
            if getattr(config, name) != getattr(round_trip, name)
        }
        raise UnsupportedModelError(
            f"a {family.model_type} config.json cannot express this model; fields (ours, expressible): {differing}."
        )
    return hf_config
