"""The Flax decoder and its building blocks (see :mod:`lrt_jax.model.decoder`)."""

from lrt_jax.model.attention import LayerCache
from lrt_jax.model.decoder import Block, Decoder, empty_cache, head_logits, init_params, unembed
from lrt_jax.model.tap import Tap

__all__ = [
    "Block",
    "Decoder",
    "empty_cache",
    "head_logits",
    "init_params",
    "LayerCache",
    "Tap",
    "unembed",
]
