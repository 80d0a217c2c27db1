"""The loaded language model: a config, a parameter pytree and an optional tokenizer."""

from __future__ import annotations

from typing import Any, NamedTuple

from lrt_jax.config import ModelConfig


class LM(NamedTuple):
    """A model ready to run.

    Attributes:
      config: the static :class:`~lrt_jax.config.ModelConfig`.
      params: the Flax parameter pytree (see :mod:`lrt_jax.model.decoder` for its layout).
      tokenizer: a ``transformers`` tokenizer, or ``None`` when the checkpoint has none.
      name: a human-readable identifier (checkpoint path or organism name), recorded in
        the metadata of anything derived from this model.
    """

    config: ModelConfig
    params: Any
    tokenizer: Any = None
    name: str = ""
