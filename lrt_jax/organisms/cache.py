"""The organism cache: train once, then load the saved HF checkpoint.

An organism lives at ``<cache root>/<name>-<recipe fingerprint>/``, where the cache
root is ``cache_dir`` if given, else ``$LRT_JAX_CACHE/organisms``, else
``~/.cache/lrt_jax/organisms``. Changing any field of a recipe changes its
fingerprint, so a stale organism is never loaded for a new recipe. Because training
renames a finished directory into place, a directory that exists is complete. A lock
file beside it makes concurrent processes asking for the same organism wait for one
training run instead of writing the same checkpoints at once. Whoever holds the lock
removes staging folders that a killed run left behind, and a cached directory that
no longer loads (damaged files) is trained again, with a warning.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import warnings
from pathlib import Path

from lrt_jax import loading
from lrt_jax.lm import LM
from lrt_jax.organisms.recipes import OrganismRecipe, get_recipe
from lrt_jax.organisms.train import train_organism

CACHE_ENVIRONMENT_VARIABLE = "LRT_JAX_CACHE"


def organism_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory that holds every cached organism."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENVIRONMENT_VARIABLE):
        return Path(os.environ[CACHE_ENVIRONMENT_VARIABLE]) / "organisms"
    return Path.home() / ".cache" / "lrt_jax" / "organisms"


def organism_path(recipe: OrganismRecipe, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``recipe``'s HF checkpoint directory is (or will be) cached."""
    return organism_cache_root(cache_dir) / f"{recipe.name}-{recipe.fingerprint()}"


def organism(
    name: str | OrganismRecipe = "small",
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> LM:
    """The trained organism ``name`` (a built-in recipe name or a recipe), training it on a cache miss.

    Example::

        small = organism("small")   # ~1 minute the first time, seconds afterwards
        logits = lrt_jax.forward(small, tokens)
    """
    recipe = get_recipe(name) if isinstance(name, str) else name
    path = organism_path(recipe, cache_dir)
    if path.is_dir():
        try:
            return loading.load(path)._replace(name=recipe.name)
        except (loading.CheckpointError, ValueError) as error:
            warnings.warn(f"cached organism {path} is damaged ({error}); training it again.", stacklevel=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if training fails
        remove_stale_staging(path)
        if path.is_dir():  # another process may have finished (or repaired) it while we waited
            try:
                return loading.load(path)._replace(name=recipe.name)
            except (loading.CheckpointError, ValueError):
                shutil.rmtree(path)
        return train_organism(recipe, path, progress=progress)


def remove_stale_staging(path: Path) -> None:
    """Remove hidden staging folders of ``path`` left by a killed run; the caller holds the lock."""
    for stale in path.parent.glob(f".{path.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
