"""lrt_jax: capture hidden states of language models, map between them, steer and evaluate."""

from lrt_jax.config import ModelConfig, RopeScaling, UnsupportedModelError
from lrt_jax.forward import capture, forward
from lrt_jax.lm import LM
from lrt_jax.model import Decoder, init_params
from lrt_jax.sites import UnknownSiteError, all_sites, site_width
