"""The HF config allowlist: a declarative field table per family, and the check that enforces it.

A family declares two tables over the fields of its (normalised) transformers config:

* ``reads`` — for every :class:`ModelConfig` field the family sets, where its value
  comes from: :func:`hf` names the HF fields it is computed from (identity for one
  field, else a small ``convert``), :func:`fixed` a value the family hard-codes;
* ``known`` — HF fields that lrt_jax does not read but knows about:
  :class:`Ignored` (harmless for inference: dropout, token ids, initialisation,
  output switches, ...) or :class:`Requires` (implemented only at the listed values).

Every other field must sit at the default transformers' config class gives it (a field
that class does not define must be absent or ``null``). Anything else raises
:class:`UnsupportedModelError` naming the field, its value, the default and the
model type: lrt_jax would silently compute something other than the checkpoint's
model. A field HF reads and lrt_jax ignores is only ever added to ``known`` after
checking the transformers modelling code.

Example of a row set::

    reads = {"d_model": hf("hidden_size"), "qk_norm": fixed("head"),
             "head_dim": hf("head_dim", "hidden_size", "num_attention_heads", convert=head_dim_from_hf)}
    known = {"clip_qkv": Requires((None,), "q/k/v clipping is not implemented")}
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from lrt_jax.config import ModelConfig, UnsupportedModelError


class Refusal(Exception):
    """Raised by a ``convert`` for a value it cannot honour; the table names the field and family.

    ``field`` and ``value`` default to the row's first HF field and its value.
    """

    def __init__(self, why: str, *, field: str | None = None, value: Any = None):
        super().__init__(why)
        self.why, self.field, self.value = why, field, value


@dataclasses.dataclass(frozen=True)
class Reads:
    """One :class:`ModelConfig` field computed from HF config fields ``sources`` (none: ``constant``)."""

    sources: tuple[str, ...]
    convert: Callable[..., Any] | None = None
    constant: Any = None

    def read(self, hf_config) -> Any:
        if not self.sources:
            return self.constant
        values = [getattr(hf_config, name, None) for name in self.sources]
        return values[0] if self.convert is None else self.convert(*values)


def hf(*sources: str, convert: Callable[..., Any] | None = None) -> Reads:
    """A field read from the HF fields ``sources``: identity for one field, else ``convert(*values)``."""
    if convert is None and len(sources) != 1:
        raise ValueError(f"reading {sources} needs a convert function")
    return Reads(sources, convert)


def fixed(value: Any) -> Reads:
    """A field the family hard-codes (Qwen2's q/k/v biases, Gemma's ``1 + w`` norms)."""
    return Reads((), constant=value)


@dataclasses.dataclass(frozen=True)
class Ignored:
    """An HF field that cannot change what an inference forward pass computes; ``why`` says why."""

    why: str


@dataclasses.dataclass(frozen=True)
class Requires:
    """An HF field lrt_jax implements only at the values ``allowed``; ``missing`` says what it lacks."""

    allowed: tuple
    missing: str


Known = Ignored | Requires

DROPOUT = Ignored("dropout, inactive at inference")
TRAINING_ONLY = Ignored("read only by the training loss or training-time noise")

# PreTrainedConfig's own fields and the keys hub configs commonly add; shared by every family.
BASE_KNOWN: dict[str, Known] = {
    **dict.fromkeys(("model_type", "architectures", "transformers_version", "_name_or_path"),
                    Ignored("identifies the checkpoint; model_type chooses the family")),
    "dtype": Ignored("the storage dtype; load(dtype=...) sets the compute dtype (checked before this table)"),
    **dict.fromkeys(("use_cache", "output_hidden_states", "output_attentions", "return_dict", "torchscript",
                     "use_bfloat16", "chunk_size_feed_forward", "tie_encoder_decoder", "is_encoder_decoder",
                     "is_decoder"),
                    Ignored("an output, caching or execution switch of the transformers classes")),
    **dict.fromkeys(("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id"),
                    Ignored("token ids for tokenisation and generation (pad_token_id only freezes an embedding "
                            "row's gradient)")),
    **dict.fromkeys(("id2label", "label2id", "problem_type", "finetuning_task", "task_specific_params",
                     "tokenizer_class", "prefix"),
                    Ignored("read by classification heads and pipelines, not by the language model")),
    "cache_implementation": Ignored("the KV-cache class generate() uses (Gemma-2's hybrid cache only stores the "
                                    "sliding layers' windows)"),
    "initializer_range": Ignored("weight initialisation only"),
    "attention_dropout": DROPOUT,
    "pruned_heads": Requires(({}, None), "pruned attention heads are not implemented"),
    "quantization_config": Requires((None,), "quantized checkpoints are not read; load the unquantized weights"),
}


def model_config_from_table(hf_config, model_type: str, reads: Mapping[str, Reads],
                            known: Mapping[str, Known]) -> ModelConfig:
    """The :class:`ModelConfig` that ``reads`` computes from the normalised ``hf_config``.

    Raises:
      UnsupportedModelError: a field outside ``reads`` and ``known`` is not at its
        transformers default, a :class:`Requires` field is at another value, or a
        ``convert`` refuses a value; the message names the field and the fix.
    """
    check_fields_are_known(hf_config, model_type, reads, known)
    values = {}
    for name, row in reads.items():
        try:
            values[name] = row.read(hf_config)
        except Refusal as refusal:
            field = refusal.field or row.sources[0]
            value = refusal.value if refusal.field else getattr(hf_config, row.sources[0], None)
            raise refuse(model_type, field, value, refusal.why) from None
    return ModelConfig(model_type=model_type, **values)


def copied_fields_to_hf(config: ModelConfig, reads: Mapping[str, Reads]) -> dict:
    """The inverse of the table's plain copies: ``{hf_field: config value}`` for every one-field, no-convert row.

    Two of our fields copied from one HF field (``attention_bias`` → ``qkv_bias`` and
    ``out_bias``) must agree, or the family's ``config.json`` cannot express the model.
    """
    written: dict[str, tuple[str, Any]] = {}
    for name, row in reads.items():
        if len(row.sources) != 1 or row.convert is not None:
            continue
        field, value = row.sources[0], getattr(config, name)
        if field in written and written[field][1] != value:
            other, other_value = written[field]
            raise UnsupportedModelError(
                f"a {config.model_type} config.json cannot express this model: {other}={other_value!r} and "
                f"{name}={value!r} are both stored as {field}.")
        written[field] = (name, value)
    return {field: value for field, (_, value) in written.items()}


def refuse(model_type: str, field: str, value, why: str) -> UnsupportedModelError:
    """The error for a config field whose value changes the computation in a way we lack."""
    return UnsupportedModelError(f"{model_type}: config field {field}={value!r} is not supported: {why}")


def check_fields_are_known(hf_config, model_type: str, reads: Mapping[str, Reads],
                           known: Mapping[str, Known]) -> None:
    """Refuse every field of ``hf_config`` that the tables do not cover and that is not at its default."""
    read_fields = {source for row in reads.values() for source in row.sources}
    defaults = class_defaults(type(hf_config))
    for field, value in hf_config.to_dict().items():
        entry = known.get(field, BASE_KNOWN.get(field))
        if field in read_fields or isinstance(entry, Ignored):
            continue
        if isinstance(entry, Requires):
            if value not in entry.allowed:
                allowed = " or ".join(repr(v) for v in entry.allowed)
                raise refuse(model_type, field, value, f"lrt_jax implements only {field}={allowed}; {entry.missing}.")
            continue
        default = defaults.get(field)
        if value != default:
            origin = (f"the transformers {type(hf_config).__name__} default is {default!r}" if field in defaults
                      else f"transformers' {type(hf_config).__name__} has no such field; remote code or a newer "
                           "transformers may use it")
            raise UnsupportedModelError(
                f"{model_type}: config field {field}={value!r} is not implemented by lrt_jax and is not at its "
                f"default ({origin}). A checkpoint that relies on it would compute something else here. If the "
                "checkpoint does not need it, remove the field or set it to its default; otherwise implement it "
                "and add it to the family's field table in lrt_jax/loading."
            )


@functools.cache
def class_defaults(config_class: type) -> dict:
    """``config_class()``'s fields as ``to_dict`` gives them: the value each field has when a config omits it."""
    return config_class().to_dict()
