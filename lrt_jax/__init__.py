"""lrt_jax: capture hidden states of language models, map between them, steer and evaluate."""

from lrt_jax.config import ModelConfig, RopeScaling, UnsupportedModelError
from lrt_jax.lm import LM
