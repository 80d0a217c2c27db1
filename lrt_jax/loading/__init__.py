"""Load HF checkpoints into lrt_jax models and save lrt_jax models as HF checkpoints.

Supported ``model_type``s: llama, mistral, qwen2, qwen3, gemma, gemma2, gpt2,
gpt_neox, mixtral, olmoe, qwen2_moe. Each family module (``llama_families``,
``moe_families``, ``gpt_families``) declares a config field table — an allowlist that
refuses any HF field it neither reads nor knows to be harmless unless the field is at
its transformers default (see ``field_table``) — and a table of tensor-name rules;
``tree_mapping`` applies the tensor tables in both directions.
With ``mesh=``, ``load`` builds each parameter from the byte ranges of the shards its
process's devices hold (``sliced_arrays``, ``byte_ranges``): host memory beyond the
device buffers is about one slice, and each host of a multi-host run reads only its own.
``load`` also takes a hub id (``"org/name"``, ``revision=``), fetched into the HF cache
by ``hub.checkpoint_directory``.
"""

from lrt_jax.loading.checkpoint import load, save
from lrt_jax.loading.errors import CheckpointError
from lrt_jax.loading.hf_config import config_from_hf, hf_config_from_model_config

__all__ = ["CheckpointError", "config_from_hf", "hf_config_from_model_config", "load", "save"]
