"""Save and restore any map state with orbax-checkpoint, plus a JSON record.

Layout of ``path`` (a directory)::

    path/arrays/    orbax StandardCheckpointer tree {"leaf_000": array, ...}
    path/map.json   {"format", "state": <structure>, "metadata": {...}}

The structure names each NamedTuple class (``RidgeState``, ``ChainState``,
...) and its fields, so ``load_map`` rebuilds the exact pytree with no
template. ``metadata`` is the caller's record; by convention it holds
``solver``, ``hyperparameters``, ``source_model``, ``target_model``,
``source_site``, ``target_site`` — whatever is known — so a map is never
applied at the wrong place silently.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lrt_jax.mappers import _base, _cca, _chain, _gradient, _reduced_rank, _ridge
from lrt_jax.mappers import _stats, _transforms

_FORMAT = "lrt_jax.map_state/1"
_STATE_TYPES = {cls.__name__: cls for cls in (
    _base.AffineState, _ridge.RidgeState, _reduced_rank.ReducedRankState,
    _cca.CCAState, _transforms.ScalingState, _transforms.LinearTransformState,
    _chain.ChainState, _gradient.GradientAffineState, _gradient.MLPState,
    _stats.SufficientStats)}


def _encode(node, leaves: dict):
    if node is None:
        return None
    if _STATE_TYPES.get(type(node).__name__) is type(node):
        return {"type": type(node).__name__,
                "fields": {name: _encode(getattr(node, name), leaves)
                           for name in node._fields}}
    if isinstance(node, (tuple, list)):
        return {"sequence": [_encode(item, leaves) for item in node]}
    if isinstance(node, (jnp.ndarray, np.ndarray, float, int)):
        key = f"leaf_{len(leaves):03d}"
        leaves[key] = np.asarray(node)
        return {"leaf": key}
    raise ValueError(f"cannot save a {type(node).__name__} inside a map state;"
                     f" states are NamedTuples of arrays ({sorted(_STATE_TYPES)}).")


def _decode(node, leaves: dict):
    if node is None:
        return None
    if "leaf" in node:
        return jnp.asarray(leaves[node["leaf"]])
    if "sequence" in node:
        return tuple(_decode(item, leaves) for item in node["sequence"])
    cls = _STATE_TYPES[node["type"]]
    return cls(**{name: _decode(value, leaves) for name, value in node["fields"].items()})


def save_map(path: str, state, metadata: dict | None = None) -> None:
    """Writes ``state`` (any map state) and a JSON record to directory ``path``.

    Args:
        path: directory to create; must not exist yet.
        state: a state from any ``lrt_jax.mappers`` factory (or chain of them).
        metadata: JSON-serialisable record, e.g. ``{"solver": "ridge",
            "hyperparameters": {"alphas": [...], "select": "gcv"},
            "source_model": ..., "target_model": ..., "source_site": ...,
            "target_site": ...}``.
    """
    metadata = {} if metadata is None else dict(metadata)
    try:
        json.dumps(metadata)
    except TypeError as error:
        raise ValueError(f"metadata must be JSON-serialisable ({error}); convert"
                         " arrays to lists and configs to dicts.") from None
    path = os.path.abspath(path)
    if os.path.exists(path):
        raise ValueError(f"{path} already exists; save_map does not overwrite —"
                         " choose a new path or delete the old map first.")
    leaves: dict = {}
    record = {"format": _FORMAT, "state": _encode(state, leaves),
              "metadata": metadata}
    os.makedirs(path)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(path, "arrays"), leaves)
    checkpointer.wait_until_finished()
    with open(os.path.join(path, "map.json"), "w") as file:
        json.dump(record, file, indent=2)


def load_map(path: str):
    """Reads a map saved by :func:`save_map`.

    Returns:
        ``(state, metadata)``: the state with its original NamedTuple types,
        and the metadata dict.
    """
    path = os.path.abspath(path)
    record_path = os.path.join(path, "map.json")
    if not os.path.exists(record_path):
        raise ValueError(f"{path} is not a saved map (no map.json); save it with"
                         " lrt_jax.mappers.save_map.")
    try:
        with open(record_path) as file:
            record = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{record_path} is not valid JSON ({error}); the map was"
                         " truncated or edited — save it again with save_map.") from None
    if record.get("format") != _FORMAT:
        raise ValueError(f"{record_path} has format {record.get('format')!r}; this"
                         f" version reads {_FORMAT!r}.")
    leaves = ocp.StandardCheckpointer().restore(os.path.join(path, "arrays"))
    try:
        return _decode(record["state"], leaves), record["metadata"]
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"{record_path} describes a state this version cannot rebuild (unknown"
            f" or missing entry {error}); known state types: {sorted(_STATE_TYPES)}."
        ) from None
