"""The Flax decoder and its building blocks (see :mod:`lrt_jax.model.decoder`)."""

from lrt_jax.model.attention import LayerCache
from lrt_jax.model.block import Block
from lrt_jax.model.decoder import Decoder, empty_cache, head_logits, init_params, unembed
from lrt_jax.model.scan import ScanCache, stack_layers, unstack_layers
from lrt_jax.model.tap import Tap

__all__ = [
    "Block",
    "Decoder",
    "empty_cache",
    "head_logits",
    "init_params",
    "LayerCache",
    "ScanCache",
    "stack_layers",
    "Tap",
    "unembed",
    "unstack_layers",
]
