"""``load`` an HF checkpoint directory into an :class:`LM`, and ``save`` an LM as one.

A directory is what ``save_pretrained`` writes: ``config.json``, ``model.safetensors``
(or shards plus ``model.safetensors.index.json``), and optionally tokenizer files.
``save`` writes the same layout with HF tensor names and a ``config.json`` for the
model's family, so transformers (PyTorch) loads our trained models directly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import transformers

from lrt_jax.lm import LM
from lrt_jax.model import init_params
from lrt_jax.model.scan import scanned_by_default
from lrt_jax.loading.errors import CheckpointError
from lrt_jax.loading.hub import checkpoint_directory
from lrt_jax.loading.hf_config import config_from_hf, family_for, hf_config_from_model_config
from lrt_jax.loading.safetensors_io import WEIGHTS_FILE, CheckpointReader, tensor_files, write_safetensors
from lrt_jax.loading.tree_mapping import hf_tensors_from_flat_tree, read_flat_tree

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def read_hf_config(directory: Path) -> dict:
    """The parsed ``config.json`` of a checkpoint directory."""
    path = directory / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: not found. Point load() at a directory written by save_pretrained().")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}).") from error


def load_tokenizer(directory: Path):
    """``AutoTokenizer`` from ``directory`` (offline), or ``None`` when it has no tokenizer files."""
    present = [name for name in TOKENIZER_FILES if (directory / name).exists()]
    if not present:
        return None
    for name in present:
        if name.endswith(".json"):
            try:
                json.loads((directory / name).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise CheckpointError(f"{directory / name}: not valid JSON ({error}); the tokenizer file is "
                                      "corrupt — copy it again from the original checkpoint.") from None
    try:
        return transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{directory}: its tokenizer files ({', '.join(present)}) cannot be loaded by "
                              f"transformers ({error}).") from error


def check_parameter_dtype(dtype):
    """``dtype`` as a NumPy dtype, refused unless it is a floating dtype (integers would truncate every weight)."""
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype={dtype!r} is not a dtype; use e.g. jnp.float32 or jnp.bfloat16.") from None
    if not jnp.issubdtype(resolved, jnp.floating):
        raise ValueError(f"dtype={resolved} would cast every weight to a non-floating type; parameters need a "
                         "floating dtype such as float32, bfloat16 or float16.")
    return resolved


def special_token_ids(tokenizer) -> dict:
    """``bos/eos/pad_token_id`` for config.json: ModelConfig does not keep them, the tokenizer does."""
    if tokenizer is None:
        return {}
    return {f"{kind}_token_id": getattr(tokenizer, f"{kind}_token_id", None) for kind in ("bos", "eos", "pad")}


def load(path: str | os.PathLike, *, dtype=jnp.float32, mesh=None, rules=None, revision: str | None = None) -> LM:
    """Load an HF checkpoint directory (safetensors) into an :class:`LM`.

    Args:
      path: directory with ``config.json`` and ``model.safetensors`` or a sharded set
        with ``model.safetensors.index.json``; tokenizer files are optional. Anything
        else that reads as a hub id (``"gpt2"``, ``"org/name"``) is downloaded into the
        HF cache (or found there) first; see :mod:`lrt_jax.loading.hub`.
      dtype: dtype every parameter is cast to as it is read.
      mesh: a :func:`lrt_jax.parallel.make_mesh` mesh; each parameter is built in its
        sharding from the slices its devices hold: a process reads only the byte ranges
        of its addressable devices' shards (through the family's transposes, q|k|v
        splits and expert stacking) and holds about one slice on the host at a time, so
        no device and no host holds the whole model. Multi-host: every process opens
        the files and reads its own shards. See :mod:`lrt_jax.loading.sliced_arrays`.
      rules: logical-axis rules for the placement (default
        :data:`lrt_jax.parallel.DEFAULT_RULES`).
      revision: branch, tag or commit, for a hub id only.

    Returns:
      ``LM(config, params, tokenizer, name=str(path))``; ``tokenizer`` is ``None`` when
      the directory has no tokenizer files.

    Raises:
      UnsupportedModelError: ``config.json`` asks for computation lrt_jax lacks.
      CheckpointError: missing/corrupt files, or tensors that are missing, unexpected
        or of the wrong shape (the message names the file and tensor); a hub id that
        cannot be fetched (offline without a cached snapshot, hub unreachable).

    Example::

      lm = load("checkpoints/pythia-70m", dtype=jnp.bfloat16)
      logits = lrt_jax.forward(lm, tokens)
    """
    if path is None or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load() takes a checkpoint directory or a hub id (str or Path); got {path!r}.")
    dtype = check_parameter_dtype(dtype)
    directory = checkpoint_directory(path, revision=revision)
    config = scanned_by_default(config_from_hf(read_hf_config(directory)))
    family = family_for(config.model_type)
    with CheckpointReader(tensor_files(directory)) as reader:
        flat = read_flat_tree(reader, family, config, dtype, shardings=param_shardings_for(config, dtype, mesh, rules))
    params = flax.traverse_util.unflatten_dict(flat, sep="/")
    return LM(config=config, params=params, tokenizer=load_tokenizer(directory), name=str(path))


def param_shardings_for(config, dtype, mesh, rules) -> dict | None:
    """``{tree path: NamedSharding}`` of ``config``'s parameters on ``mesh`` (``None`` without a mesh)."""
    if mesh is None:
        return None
    from lrt_jax import parallel

    abstract = jax.eval_shape(lambda: init_params(config, jax.random.key(0), dtype))
    return flax.traverse_util.flatten_dict(
        parallel.param_shardings(abstract, mesh, rules or parallel.DEFAULT_RULES), sep="/")


def save(lm: LM, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write ``lm`` as an HF checkpoint directory that transformers and :func:`load` read.

    Writes ``config.json`` (the family's fields, ``architectures`` and ``dtype``),
    ``model.safetensors`` in the family's HF names and layout (per-expert MoE weights),
    and the tokenizer when ``lm.tokenizer`` is set. Parameters keep their dtype.

    The checkpoint is written into a hidden folder beside ``path`` and renamed into
    place, so ``path`` never holds a mix of two checkpoints (an old tokenizer beside new
    weights) nor half of one.

    Args:
      lm: the model.
      path: the directory to create.
      overwrite: replace an existing non-empty ``path`` (all of it) instead of refusing.

    Raises:
      FileExistsError: ``path`` exists and is not empty, and ``overwrite`` is false.
      UnsupportedModelError: the config's family cannot express one of its flags.
    """
    directory = Path(path)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())) and not overwrite:
        raise FileExistsError(f"{directory} exists and is not empty; pass overwrite=True to replace it "
                              "with this checkpoint, or choose a new directory.")
    hf_config = hf_config_from_model_config(lm.config)
    flat = {p: np.asarray(jax.device_get(a)) for p, a in flax.traverse_util.flatten_dict(lm.params, sep="/").items()}
    tensors = hf_tensors_from_flat_tree(flat, family_for(lm.config.model_type), lm.config)
    dtypes = {str(a.dtype) for a in tensors.values()}
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.saving-", dir=directory.parent))
    try:
        write_safetensors(tensors, staging / WEIGHTS_FILE)
        hf_config["dtype"] = dtypes.pop() if len(dtypes) == 1 else "float32"
        hf_config.update(special_token_ids(lm.tokenizer))
        (staging / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
        if lm.tokenizer is not None:
            lm.tokenizer.save_pretrained(str(staging))
        replace_directory(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(new: Path, destination: Path) -> None:
    """Move the finished folder ``new`` onto ``destination``, removing what was there only afterwards."""
    if not destination.exists():
        os.replace(new, destination)
        return
    old = destination.with_name(f".{destination.name}.replaced-{os.getpid()}")
    os.replace(destination, old)
    os.replace(new, destination)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()
