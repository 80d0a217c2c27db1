"""Saved maps: a map state plus the :class:`MapInfo` record of where it applies.

A map fitted from ``layers.6.resid_post`` of one model to ``layers.9.resid_post``
of another is meaningless anywhere else, and a width that happens to match would
hide the mistake. So every saved map carries a :class:`MapInfo` (models, sites,
widths, solver and hyperparameters, rows fitted on), and what :func:`load_map`
returns, a :class:`LoadedMap`, checks it on use:

- ``load_map(path, source_site=..., target_model=..., source_width=...)`` raises
  :class:`MapMismatchError` when a given expectation disagrees with the record;
- ``LoadedMap.apply(x)`` refuses an ``x`` of another width, naming the file, the
  site and both widths;
- a ``LoadedMap`` is affine when its state is, so ``linear(loaded)``,
  ``bias(loaded)`` and ``steering.transfer_vector(vector, loaded, ...)`` work.

On disk a map is one ``.safetensors`` file in the :mod:`lrt_jax.artifacts` format
(kind ``"map"``): tensors named by their path in the state (``weight``,
``stages.2.bias``), the state's NamedTuple structure and the info in the header.
Save functions take ``(object, path)``: ``save_map(state, path, info)``.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import jax.numpy as jnp

from lrt_jax import artifacts
from lrt_jax.mappers import _base, _cca, _chain, _gradient, _reduced_rank, _ridge
from lrt_jax.mappers import _stats, _transforms

KIND = "map"
MAP_FILE = "map.safetensors"
_STATE_TYPES = {cls.__name__: cls for cls in (
    _base.AffineState, _ridge.RidgeState, _reduced_rank.ReducedRankState,
    _cca.CCAState, _transforms.ScalingState, _transforms.LinearTransformState,
    _chain.ChainState, _gradient.GradientAffineState, _gradient.MLPState,
    _stats.SufficientStats)}


class MapMismatchError(ValueError):
    """Raised when a saved map is used with models, sites or widths it was not fitted on."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class MapInfo:
    """Provenance of a fitted map ``source activations [n, source_width] → target [n, target_width]``.

    Attributes:
      source_model: name or checkpoint path of the model whose activations are the inputs.
      target_model: the model whose activations the map predicts.
      source_site: canonical site of the inputs, e.g. ``"layers.6.resid_post"``.
      target_site: canonical site of the outputs.
      source_width: width of ``source_site``; the map's input width.
      target_width: width of ``target_site``; the map's output width.
      solver: mapper factory, e.g. ``"ridge"``, ``"lstsq"``, ``"reduced_rank"``.
      hyperparameters: its arguments and chosen values (JSON-serialisable),
        e.g. ``{"select": "gcv", "alpha": 10.0}``.
      n_fit: number of paired rows fitted on.
      reduce: how each prompt became a row (``"last"`` token, ``"mean"`` over tokens).
      dataset: the prompts the rows came from (file name).
      heldout_r2: R² on held-out rows, when measured.
      created: UTC time of creation (ISO 8601).
    """

    source_model: str
    target_model: str
    source_site: str
    target_site: str
    source_width: int
    target_width: int
    solver: str
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    n_fit: int = 0
    reduce: str = ""
    dataset: str = ""
    heldout_r2: float | None = None
    created: str = dataclasses.field(default_factory=_now)

    def __post_init__(self):
        for name in ("source_width", "target_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MapInfo.{name} must be a positive int (the site's width), got {value!r}.")

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        return {**dataclasses.asdict(self), "hyperparameters": dict(self.hyperparameters)}

    @classmethod
    def from_dict(cls, fields: Mapping) -> "MapInfo":
        """Inverse of :meth:`to_dict`."""
        return cls(**fields)

    def summary(self) -> dict[str, str]:
        """``str -> str`` description, e.g. for ``steering.transfer_vector(map_info=...)``."""
        fields = {key: value for key, value in self.to_dict().items() if key != "hyperparameters"}
        fields.update({f"hyperparameters.{key}": value for key, value in self.hyperparameters.items()})
        return {key: f"{value:g}" if isinstance(value, float) else str(value) for key, value in fields.items()}


def _same_model(recorded: str, expected: str) -> bool:
    """Names are equal, or are two spellings of one existing checkpoint path."""
    if recorded == expected:
        return True
    return os.path.exists(recorded) and os.path.exists(expected) and os.path.samefile(recorded, expected)


@dataclasses.dataclass(frozen=True)
class LoadedMap:
    """A map read by :func:`load_map`: its state, its :class:`MapInfo` and the file.

    Attributes:
      state: the map state with its original NamedTuple types (a pytree; pass it to
        ``jax.jit``-ed code, or to a mapper's ``apply``).
      info: the record saved with it.
      path: the file it was read from, named in every error.
    """

    state: Any
    info: MapInfo
    path: Path

    def affine_parts(self):
        """``(W [source_width, target_width], b [target_width])``; raises ``NotAffineError`` for MLP maps."""
        return _base.affine_parts(self.state)

    def check(self, *, source_model: str | None = None, target_model: str | None = None,
              source_site: str | None = None, target_site: str | None = None,
              source_width: int | None = None, target_width: int | None = None) -> "LoadedMap":
        """Raise :class:`MapMismatchError` naming every given expectation the record contradicts."""
        info, problems = self.info, []
        for name, expected in (("source_site", source_site), ("target_site", target_site),
                               ("source_width", source_width), ("target_width", target_width)):
            if expected is not None and getattr(info, name) != expected:
                problems.append(f"its {name} is {getattr(info, name)!r}, not {expected!r}")
        for name, expected in (("source_model", source_model), ("target_model", target_model)):
            if expected is not None and not _same_model(getattr(info, name), expected):
                problems.append(f"its {name} is {getattr(info, name)!r}, not {expected!r}")
        if problems:
            raise MapMismatchError(
                f"the map {self.path} does not fit: " + "; ".join(problems) + ". Fit a map between these "
                "models and sites (lrt-jax fit), or use the map that was fitted for them.")
        return self

    def apply(self, x, apply_fn: Callable | None = None):
        """The map applied to source activations ``x [..., source_width]`` → ``[..., target_width]``.

        Args:
          x: activations of ``info.source_site`` of ``info.source_model``.
          apply_fn: the mapper's ``apply`` (needed for non-affine states such as MLP
            maps); ``None`` applies the affine map ``x @ W + b``.
        """
        width = jnp.shape(x)[-1] if jnp.ndim(x) else None
        if width != self.info.source_width:
            raise MapMismatchError(
                f"x has width {width} but the map {self.path} takes width {self.info.source_width} (site "
                f"{self.info.source_site} of {self.info.source_model}); apply it to activations of that site.")
        if apply_fn is None:
            return _base.apply_affine(self, x)  # self.affine_parts raises NotAffineError for MLP maps
        return apply_fn(self.state, x)


def save_map(state, path, info: MapInfo, *, overwrite: bool = False) -> Path:
    """Write ``state`` and its ``info`` to one ``.safetensors`` file (atomically).

    Args:
      state: a state from any ``lrt_jax.mappers`` factory (or chain of them).
      path: destination ``<name>.safetensors``; its folder is created.
      info: the :class:`MapInfo`; for an affine state its widths must be the state's.
      overwrite: replace an existing file (otherwise ``FileExistsError``).

    Returns:
      ``path``.
    """
    if not isinstance(info, MapInfo):
        raise TypeError(f"info must be a MapInfo (models, sites, widths, solver), got {type(info).__name__}.")
    if hasattr(state, "affine_parts"):
        shape = tuple(_base.linear(state).shape)
        if shape != (info.source_width, info.target_width):
            raise ValueError(f"the state maps width {shape[0]} to {shape[1]} but info says "
                             f"{info.source_width} → {info.target_width}; record the widths the map was fitted on.")
    return artifacts.save_artifact(state, path, kind=KIND, info=info.to_dict(), node_types=_STATE_TYPES,
                                   overwrite=overwrite)


def _map_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    if (path / MAP_FILE).exists():
        return path / MAP_FILE
    if (path / "map.json").exists():
        raise ValueError(f"{path} is a map directory in the old orbax format (map.json + arrays/); maps are now "
                         f"one {MAP_FILE} file that records their models, sites and widths — fit it again with "
                         "`lrt-jax fit`, or restore its state and save it with save_map(state, path, MapInfo(...)).")
    raise FileNotFoundError(f"{path} is a directory without {MAP_FILE}; give a map file written by save_map "
                            "or an `lrt-jax fit` output directory.")


def load_map(path, *, source_model: str | None = None, target_model: str | None = None,
             source_site: str | None = None, target_site: str | None = None,
             source_width: int | None = None, target_width: int | None = None) -> LoadedMap:
    """Read a map written by :func:`save_map` and check it against what the caller expects.

    Args:
      path: the ``.safetensors`` file, or a directory holding ``map.safetensors``
        (what ``lrt-jax fit`` writes).
      source_model, ..., target_width: each one given must equal the saved
        :class:`MapInfo` field (models also match as two paths of one checkpoint).

    Returns:
      A :class:`LoadedMap` (``state``, ``info``, ``path``).

    Raises:
      MapMismatchError: an expectation disagrees with the record.
      ValueError / FileNotFoundError: the file is missing, damaged, of an old format
        or not a map; the message names it.
    """
    path = _map_file(Path(path))
    artifact = artifacts.load_artifact(
        path, kind=KIND, info_from=MapInfo.from_dict, node_types=_STATE_TYPES,
        old_format_hint="Save the map with lrt_jax.mappers.save_map(state, path, MapInfo(...)).")
    loaded = LoadedMap(artifact.tree, artifact.info, artifact.path)
    return loaded.check(source_model=source_model, target_model=target_model, source_site=source_site,
                        target_site=target_site, source_width=source_width, target_width=target_width)
