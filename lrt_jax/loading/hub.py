"""Hub ids for :func:`lrt_jax.load`: ``"org/name"`` becomes a local snapshot directory.

:func:`checkpoint_directory` is what ``load`` calls first. A local directory is used as
it is; anything else that reads as a hub id (``"gpt2"``, ``"org/name"``) is fetched with
``huggingface_hub.snapshot_download`` into the user's HF cache (``HF_HOME`` /
``HF_HUB_CACHE``), limited to the files ``load`` reads (:data:`ALLOW_PATTERNS`); a
cached snapshot is reused, offline too. Every failure is a :class:`CheckpointError`
saying what happened and what to do; an unreachable hub fails within
``huggingface_hub``'s timeouts (``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``,
10 s each by default) rather than hanging.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lrt_jax.loading.errors import CheckpointError

ALLOW_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
]
"""The files a snapshot download fetches: config, safetensors weights, tokenizer, generation config."""

# HF repo names: letters, digits, '-', '_', '.'; one optional 'org/' in front.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` reads as ``"name"`` or ``"org/name"`` rather than as a filesystem path.

    Paths start with ``.``, ``/`` or ``~``, contain a backslash, more than one ``/``, or
    ``..``/``--`` (which HF forbids in repo names).
    """
    if not name or name[0] in "./~" or "\\" in name or (os.altsep and os.altsep in name):
        return False
    return bool(_HUB_ID.match(name)) and ".." not in name and "--" not in name


def checkpoint_directory(path, *, revision: str | None = None) -> Path:
    """The local checkpoint directory for ``path``: itself, or the hub snapshot it names.

    Args:
      path: a local directory, or a hub id ``"org/name"`` / ``"name"``.
      revision: branch, tag or commit of a hub id (default: the repo's main branch).

    Raises:
      CheckpointError: a path that is not a directory; a hub id that cannot be fetched
        (offline without a cached snapshot, hub unreachable, repo or revision not found).
    """
    directory = Path(path)
    if directory.is_dir():
        if revision is not None:
            raise CheckpointError(f"{path}: a local directory; revision= applies only to hub ids ('org/name').")
        return directory
    name = os.fspath(path)
    if not isinstance(name, str) or not looks_like_hub_id(name):
        raise CheckpointError(
            f"{directory}: not a directory. load() takes an HF checkpoint directory or a hub id 'org/name'.")
    return Path(_download(name, revision))


def _download(repo_id: str, revision: str | None) -> str:
    import huggingface_hub
    from huggingface_hub import constants, errors

    at = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    local = (f"Or pass a local directory: download it where there is network "
             f"(e.g. `hf download {repo_id} --local-dir DIR`) and load('DIR'), which does not use the hub.")
    try:
        return huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS)
    except (errors.RepositoryNotFoundError, errors.GatedRepoError) as error:
        raise CheckpointError(
            f"{repo_id}: not a local directory, so treated as a hub id, but the hub has no repo {at} "
            f"that this account can read ({type(error).__name__}). Check the name, or log in (`hf auth login`) "
            f"for gated or private repos. {local}") from error
    except errors.RevisionNotFoundError as error:
        raise CheckpointError(f"{repo_id}: the hub repo has no revision {revision!r}. {local}") from error
    except (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError) as error:
        if constants.HF_HUB_OFFLINE:
            reason = ("HF_HUB_OFFLINE is set, so the hub is not contacted, and the HF cache "
                      f"({constants.HF_HUB_CACHE}) has no snapshot of it. Unset HF_HUB_OFFLINE (or set it to 0) "
                      "to download")
        else:
            reason = ("the hub could not be reached and the HF cache has no snapshot of it "
                      f"({_root_cause(error)}). Check the network (or HF_ENDPOINT), or set HF_HUB_OFFLINE=1 "
                      "and use a cached snapshot")
        raise CheckpointError(
            f"{repo_id}: not a local directory, so treated as a hub id {at}, which needs network or a "
            f"local snapshot: {reason}. {local}") from error
    except (errors.HfHubHTTPError, OSError) as error:
        raise CheckpointError(
            f"{repo_id}: not a local directory, so treated as a hub id {at}; downloading it failed "
            f"({type(error).__name__}: {error}). {local}") from error


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}".splitlines()[0]
