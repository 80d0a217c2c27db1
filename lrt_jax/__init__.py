"""lrt_jax: capture hidden states of language models, map between them, steer and evaluate.

The public namespace: models (``load``, ``save``, ``forward``, ``capture``), sites,
interventions and the subpackages ``mappers``, ``metrics``, ``steering``, ``tasks``,
``results``, ``parallel`` and ``organisms``.
"""

from lrt_jax import evaluation, mappers, metrics, parallel, results, sites, steering, tasks
from lrt_jax.config import ModelConfig, RopeScaling, UnsupportedModelError
from lrt_jax._run import Output, capture, checked, forward, run
from lrt_jax._generate import Generation, generate
from lrt_jax.interventions import Ablate, Add, Mix, Replace, Scale
from lrt_jax.lm import LM
from lrt_jax.loading import CheckpointError, load, save
from lrt_jax.model import Decoder, init_params
from lrt_jax.sites import UnknownSiteError, all_sites, site_width
from lrt_jax._sweep import sweep
from lrt_jax.text import Batch, decode, encode
