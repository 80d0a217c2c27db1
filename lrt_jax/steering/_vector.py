"""The steering-vector artifact: an array plus the record of where it belongs.

A vector is only meaningful at the site and model it was estimated from, and
adding it elsewhere fails silently (a residual stream of the right width at the
wrong layer still adds). :class:`VectorInfo` therefore travels with every vector,
is saved beside it, and :func:`check_vector_fits` compares it with the place an
intervention is about to write to.

On disk a vector is two files with a common stem: ``name.safetensors`` (one
tensor, ``"vector"``) and ``name.json`` (the :class:`VectorInfo` fields).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from lrt_jax.outputs import atomic_path, check_output_file, write_json_atomic

_FORMAT = "lrt_jax.steering_vector"
_FORMAT_VERSION = 1


class VectorMismatchError(ValueError):
    """Raised when a vector is applied to a site, width or model it was not made for."""


@dataclasses.dataclass(frozen=True)
class VectorInfo:
    """Provenance of a steering vector.

    Attributes:
      model: name or checkpoint path of the model whose activations define the vector.
      site: canonical site, e.g. ``"layers.12.resid_post"``.
      d_model: width of that site; the vector's last axis.
      position_rule: which token stood for each prompt: ``"last_token"``,
        ``"answer_letter"`` or ``"masked_mean"`` (see :mod:`~lrt_jax.steering._positions`).
      estimator: how it was computed, e.g. ``"diff_of_means"``, ``"pca_of_differences(center=False)[0]"``.
      normalisation: scaling applied after estimation, e.g. ``"none"``, ``"unit"``, ``"norm=4.0"``.
      dataset: the data it was estimated from (file or task name).
      count: number of examples (pairs for paired estimators; the positive set for
        :func:`~lrt_jax.steering.diff_of_means`, whose sets need not pair up).
      count_negative: size of the negative set when it was counted separately
        (:func:`~lrt_jax.steering.diff_of_means`); ``None`` otherwise.
      transferred_from: the source vector's info when this vector was mapped from another model.
      transfer_mode: how it was mapped (``"linear"``, ``"affine"``, ``"means"``, ``"unmapped"``).
      map_info: ``(key, value)`` string pairs describing the map (kept as a tuple so
        the info stays hashable and can be a static pytree field).
    """

    model: str
    site: str
    d_model: int
    position_rule: str
    estimator: str
    normalisation: str = "none"
    dataset: str = ""
    count: int = 0
    count_negative: int | None = None
    transferred_from: "VectorInfo | None" = None
    transfer_mode: str | None = None
    map_info: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready nested dict (``map_info`` becomes an object)."""
        fields = dataclasses.asdict(self)
        fields["map_info"] = dict(self.map_info)
        if self.transferred_from is not None:
            fields["transferred_from"] = self.transferred_from.to_dict()
        return fields

    @classmethod
    def from_dict(cls, fields: dict) -> "VectorInfo":
        """Inverse of :meth:`to_dict`."""
        fields = dict(fields)
        fields["map_info"] = tuple((str(k), str(v)) for k, v in fields.get("map_info", {}).items())
        if fields.get("transferred_from") is not None:
            fields["transferred_from"] = cls.from_dict(fields["transferred_from"])
        return cls(**fields)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SteeringVector:
    """A steering direction and its provenance; a pytree whose only leaf is ``vector``.

    Attributes:
      vector: ``[d_model]`` array (or ``[..., d_model]`` for a stack of vectors to
        ``vmap`` over).
      metadata: :class:`VectorInfo`, a static field, so ``jit`` specialises on it
        and ``tree_map`` leaves it untouched.
    """

    vector: jnp.ndarray
    metadata: VectorInfo = dataclasses.field(metadata={"static": True})

    def __post_init__(self):
        # Pytree utilities rebuild instances with placeholder leaves; only check real arrays.
        shape = getattr(self.vector, "shape", None)
        if shape is not None and (len(shape) == 0 or shape[-1] != self.metadata.d_model):
            raise ValueError(
                f"vector has shape {tuple(shape)} but metadata.d_model is {self.metadata.d_model}; "
                "the last axis must be the model width."
            )


def check_vector_fits(vector: SteeringVector, *, site: str, d_model: int, model_name: str | None = None) -> None:
    """Raise :class:`VectorMismatchError` unless ``vector`` belongs at ``site`` of a ``d_model``-wide model.

    Args:
      vector: the vector about to be applied.
      site: the canonical site the intervention writes to.
      d_model: the width of that site.
      model_name: when given, the vector's ``metadata.model`` must equal it too.
    """
    info = vector.metadata
    problems = []
    if info.site != site:
        problems.append(f"it was made for site {info.site!r}, not {site!r}")
    if info.d_model != d_model:
        problems.append(f"it has width {info.d_model}, the site has width {d_model}")
    if model_name is not None and info.model != model_name:
        problems.append(f"it was made for model {info.model!r}, not {model_name!r}")
    if problems:
        raise VectorMismatchError(
            "Steering vector does not fit: " + "; ".join(problems) + ". Estimate a vector at this site, "
            "or map it across models with lrt_jax.steering.transfer_vector."
        )


def _metadata_path(path: pathlib.Path) -> pathlib.Path:
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: steering vectors are stored as '<name>.safetensors' (+ '<name>.json').")
    return path.with_suffix(".json")


def check_vector_destination(path, *, overwrite: bool = False) -> pathlib.Path:
    """Refuse a vector path before any work: a wrong suffix, a folder below a file, or (unless
    ``overwrite``) an existing vector or metadata file."""
    path = pathlib.Path(path)
    metadata_path = _metadata_path(path)
    for existing in (path, metadata_path):
        check_output_file(existing, overwrite=overwrite)
    return path


def save_vector(path, vector: SteeringVector) -> None:
    """Write ``vector`` to ``path`` (``*.safetensors``) and its metadata to the ``.json`` beside it."""
    path = pathlib.Path(path)
    metadata_path = _metadata_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        safetensors.numpy.save_file({"vector": np.asarray(vector.vector)}, str(temporary))
    record = {"format": _FORMAT, "version": _FORMAT_VERSION, "info": vector.metadata.to_dict()}
    write_json_atomic(metadata_path, record)


def load_vector(path) -> SteeringVector:
    """Read a vector written by :func:`save_vector`."""
    path = pathlib.Path(path)
    metadata_path = _metadata_path(path)
    if not metadata_path.exists():
        raise FileNotFoundError(f"{metadata_path} is missing; a steering vector needs its metadata file beside it.")
    try:
        record = json.loads(metadata_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{metadata_path} is not valid JSON ({error}); save the vector again.") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT or record.get("version") != _FORMAT_VERSION:
        record = record if isinstance(record, dict) else {}
        raise ValueError(
            f"{metadata_path} is not a version-{_FORMAT_VERSION} {_FORMAT} file "
            f"(found format={record.get('format')!r}, version={record.get('version')!r})."
        )
    if not isinstance(record.get("info"), dict):
        raise ValueError(f"{metadata_path} has no 'info' record (the vector's model, site and width); "
                         "save the vector again with lrt_jax.steering.save_vector.")
    try:
        info = VectorInfo.from_dict(record["info"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{metadata_path}: its 'info' record is incomplete or malformed ({error!r}).") from None
    try:
        array = safetensors.numpy.load_file(str(path))["vector"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing; its metadata {metadata_path.name} has no vector beside it.") from None
    except KeyError:
        raise ValueError(f"{path} holds no tensor named 'vector'; it was not written by save_vector.") from None
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{path} is not a readable safetensors file ({error}); it may be truncated — "
                         "save the vector again.") from None
    return SteeringVector(jnp.asarray(array), info)
