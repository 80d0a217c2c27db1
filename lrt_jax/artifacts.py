"""Artifacts: one on-disk format for every saved map and vector.

An *artifact* is a pytree of arrays (a map state, a steering vector) together with
a record of where it belongs (a metadata dataclass: models, sites, widths, how it
was made). It is stored as **one safetensors file**:

- the tensors are the tree's array leaves, each named by its path in the tree
  (``weight``, ``stages.1.bias``, ``vector``), so any safetensors reader can open
  them;
- the safetensors header's ``__metadata__`` holds four strings::

      format  "lrt_jax.artifact"        version  "1"
      kind    "map" | "steering_vector" (what the file holds)
      info    strict JSON of the metadata dataclass (``to_dict()``)
      tree    strict JSON of the tree's structure: {"type": "RidgeState",
              "fields": {...}}, {"sequence": [...]}, {"mapping": {...}},
              {"leaf": "<tensor name>"} or null

so :func:`load_artifact` rebuilds the exact pytree (the NamedTuple classes it is
given by name) with no template. Writes are atomic (temporary file + rename) and
never replace an existing file unless ``overwrite=True``. Reading checks the
format, the version and the kind, and names the file in every error.

This module knows nothing of maps or vectors; ``lrt_jax.mappers.save_map`` and
``lrt_jax.steering.save_vector`` give it their trees and info. Every save function
takes ``(object, path)`` in that order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from safetensors import safe_open

from lrt_jax.outputs import atomic_path, check_output_location, to_strict_json

FORMAT = "lrt_jax.artifact"
VERSION = "1"
SUFFIX = ".safetensors"
_LOADERS = {"map": "lrt_jax.mappers.load_map", "steering_vector": "lrt_jax.steering.load_vector"}


class Artifact(NamedTuple):
    """What :func:`load_artifact` returns.

    Attributes:
      tree: the saved pytree, leaves as ``jax.Array``.
      info: the metadata object built by the ``info_from`` function it was given.
      path: the file it was read from.
    """

    tree: Any
    info: Any
    path: Path


def _encode(node, prefix: str, leaves: dict, node_types: Mapping[str, type]):
    if node is None:
        return None
    if node_types.get(type(node).__name__) is type(node):
        return {"type": type(node).__name__,
                "fields": {name: _encode(getattr(node, name), f"{prefix}{name}.", leaves, node_types)
                           for name in node._fields}}
    if isinstance(node, Mapping):
        return {"mapping": {str(key): _encode(value, f"{prefix}{key}.", leaves, node_types)
                            for key, value in node.items()}}
    if isinstance(node, (tuple, list)):
        return {"sequence": [_encode(item, f"{prefix}{i}.", leaves, node_types) for i, item in enumerate(node)]}
    if isinstance(node, (jnp.ndarray, np.ndarray, np.generic, float, int)) and not isinstance(node, bool):
        key = prefix.rstrip(".") or "value"
        if key in leaves:
            raise ValueError(f"two leaves of the tree are both named {key!r}; rename a field or key.")
        leaves[key] = np.ascontiguousarray(np.asarray(node))
        return {"leaf": key}
    raise ValueError(f"cannot save a {type(node).__name__} in an artifact; trees hold arrays in NamedTuples "
                     f"({', '.join(sorted(node_types)) or 'none registered'}), dicts, tuples and lists.")


def _decode(node, leaves: dict, node_types: Mapping[str, type]):
    if node is None:
        return None
    if "leaf" in node:
        return jnp.asarray(leaves[node["leaf"]])
    if "sequence" in node:
        return tuple(_decode(item, leaves, node_types) for item in node["sequence"])
    if "mapping" in node:
        return {key: _decode(value, leaves, node_types) for key, value in node["mapping"].items()}
    cls = node_types[node["type"]]
    return cls(**{name: _decode(value, leaves, node_types) for name, value in node["fields"].items()})


def check_artifact_path(path, *, overwrite: bool = False) -> Path:
    """Refuse a destination before any work: a suffix other than ``.safetensors``, a folder
    below a file, a directory, or (unless ``overwrite``) an existing file."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"{path}: artifacts are single '<name>{SUFFIX}' files; give a path ending in {SUFFIX}.")
    check_output_location(path.parent)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name ending in {SUFFIX}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True in Python) to replace it, or "
                              "choose another name.")
    return path


def save_artifact(tree, path, *, kind: str, info: Mapping, node_types: Mapping[str, type] | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``tree`` and its ``info`` record to the single file ``path`` (atomically).

    Args:
      tree: a pytree of arrays: NamedTuples whose class is in ``node_types``, dicts,
        tuples/lists and ``None``.
      path: destination ``<name>.safetensors``; its folder is created.
      kind: what the file holds (``"map"``, ``"steering_vector"``), checked on load.
      info: the metadata dataclass's ``to_dict()``; written as strict JSON.
      node_types: ``{class name: class}`` of the NamedTuples the tree may contain.
      overwrite: replace an existing file (otherwise ``FileExistsError``).

    Returns:
      ``path``.
    """
    path = check_artifact_path(path, overwrite=overwrite)
    leaves: dict = {}
    structure = _encode(tree, "", leaves, node_types or {})
    try:
        info_json = to_strict_json(dict(info))
    except (TypeError, ValueError) as error:
        raise ValueError(f"the info of {path} must be JSON-serialisable ({error}); convert arrays to lists and "
                         "configs to dicts.") from None
    header = {"format": FORMAT, "version": VERSION, "kind": kind, "info": info_json,
              "tree": to_strict_json(structure)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        safetensors.numpy.save_file(leaves, str(temporary), metadata=header)
    return path


def _read(path: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(path), framework="np") as file:
            header = file.metadata() or {}
            leaves = {key: file.get_tensor(key) for key in file.keys()}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist.") from None
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{path} is not a readable safetensors file ({error}); it may be truncated or "
                         "damaged — save it again.") from None
    return header, leaves


def load_artifact(path, *, kind: str, info_from: Callable[[dict], Any], node_types: Mapping[str, type] | None = None,
                  old_format_hint: str = "") -> Artifact:
    """Read an artifact written by :func:`save_artifact` and check that it holds a ``kind``.

    Args:
      path: the ``.safetensors`` file.
      kind: the kind expected (a map file given to ``load_vector`` is refused).
      info_from: builds the metadata object from the stored dict (e.g. ``MapInfo.from_dict``).
      node_types: ``{class name: class}`` of the NamedTuples the tree may contain.
      old_format_hint: appended to the error for a safetensors file without our header
        (e.g. how to re-save a file of an earlier format).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not safetensors, truncated, another format, version or kind, or an
        info/tree record this version cannot rebuild; the message names the file.
    """
    path, node_types = Path(path), node_types or {}
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the artifact file ('<name>{SUFFIX}').")
    header, leaves = _read(path)
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file without an {FORMAT} header, so it records no models, "
                         f"sites or widths. {old_format_hint}".rstrip())
    if header.get("version") != VERSION:
        raise ValueError(f"{path} is {FORMAT} version {header.get('version')!r}; this lrt_jax reads version "
                         f"{VERSION!r} — save it again with this version.")
    if header.get("kind") != kind:
        loader = _LOADERS.get(header.get("kind"), "the loader of its kind")
        raise ValueError(f"{path} holds a {header.get('kind')!r}, not a {kind!r}; load it with {loader}.")
    try:
        info_fields, structure = json.loads(header["info"]), json.loads(header["tree"])
    except (KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: its header's info/tree record is missing or not JSON ({error}); save it "
                         "again.") from None
    try:
        info = info_from(info_fields)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path}: its info record is incomplete or malformed ({error!r}); save it again.") from None
    try:
        tree = _decode(structure, leaves, node_types)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} describes a tree this version cannot rebuild (unknown or missing entry "
                         f"{error}); known types: {sorted(node_types)}.") from None
    return Artifact(tree, info, path)
