"""lrt_jax: capture hidden states of language models, map between them, steer and evaluate.

The public namespace: models (``load``, ``save``, ``forward``, ``capture``, ``run``),
batched text capture (``capture_texts``, ``capture_text_tokens``, with position rules
in ``positions``), sites, interventions and the subpackages ``mappers``, ``metrics``,
``steering``, ``tasks``, ``results``, ``parallel``, ``patching`` (activation patching),
``lens`` (the logit lens) and ``organisms``.
"""

from lrt_jax import evaluation, lens, mappers, metrics, parallel, patching, positions, results, sites, steering, tasks
from lrt_jax.config import Execution, ModelConfig, RopeScaling, UnsupportedModelError
from lrt_jax._capture_texts import capture_text_tokens, capture_texts
from lrt_jax._run import Output, capture, checked, forward, run
from lrt_jax._generate import Generation, generate
from lrt_jax.interventions import Ablate, Add, Mix, Replace, Scale
from lrt_jax.lm import LM
from lrt_jax.loading import CheckpointError, load, save
from lrt_jax.model import Decoder, init_params
from lrt_jax.sites import UnknownSiteError, all_sites, site_width
from lrt_jax._sweep import sweep
from lrt_jax.text import Batch, decode, encode

__all__ = [
    "Ablate", "Add", "Batch", "CheckpointError", "Decoder", "Execution", "Generation", "LM", "Mix", "ModelConfig", "Output",
    "Replace", "RopeScaling", "Scale", "UnknownSiteError", "UnsupportedModelError", "all_sites", "capture",
    "capture_text_tokens", "capture_texts", "checked", "decode", "encode", "evaluation", "forward", "generate",
    "init_params", "lens", "load", "mappers", "metrics", "parallel", "patching", "positions", "results", "run",
    "save", "site_width", "sites", "steering", "sweep", "tasks",
]
