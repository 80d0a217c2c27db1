"""The steering-vector artifact: an array plus the record of where it belongs.

A vector is only meaningful at the site and model it was estimated from, and
adding it elsewhere fails silently (a residual stream of the right width at the
wrong layer still adds). :class:`VectorInfo` therefore travels with every vector,
is saved beside it, and :func:`check_vector_fits` compares it with the place an
intervention is about to write to.

On disk a vector is one ``name.safetensors`` file in the :mod:`lrt_jax.artifacts`
format (kind ``"steering_vector"``): the tensor ``"vector"``, and the
:class:`VectorInfo` fields as JSON in its header. ``save_vector(vector, path)``
takes ``(object, path)`` like ``lrt_jax.mappers.save_map``; ``load_vector(path,
site=..., d_model=..., model_name=...)`` checks the vector fits before it is used.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp

from lrt_jax import artifacts

_KIND = "steering_vector"


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


def check_vector_destination(path, *, overwrite: bool = False) -> pathlib.Path:
    """Refuse a vector path before any work: a suffix other than ``.safetensors``, a folder
    below a file, or (unless ``overwrite``) an existing file."""
    return artifacts.check_artifact_path(path, overwrite=overwrite)


def save_vector(vector: SteeringVector, path, *, overwrite: bool = False) -> pathlib.Path:
    """Write ``vector`` and its :class:`VectorInfo` to one ``<name>.safetensors`` file (atomically).

    Arguments are ``(object, path)``, as for ``lrt_jax.mappers.save_map``; an existing file is
    replaced only with ``overwrite=True``.
    """
    return artifacts.save_artifact({"vector": vector.vector}, path, kind=_KIND, info=vector.metadata.to_dict(),
                                   overwrite=overwrite)


def load_vector(path, *, site: str | None = None, d_model: int | None = None,
                model_name: str | None = None) -> SteeringVector:
    """Read a vector written by :func:`save_vector`; check it fits where it will be applied.

    Args:
      path: the ``<name>.safetensors`` file.
      site, d_model, model_name: when given, the vector must have been made for this
        site, width and model (:func:`check_vector_fits`).

    Raises:
      VectorMismatchError: a given expectation disagrees with the vector's info.
      ValueError / FileNotFoundError: the file is missing, damaged, of an older format or
        not a vector; the message names it.
    """
    path = pathlib.Path(path)
    sidecar = path.with_suffix(".json")
    artifact = artifacts.load_artifact(
        path, kind=_KIND, info_from=VectorInfo.from_dict,
        old_format_hint=f"Vectors written before the one-file format kept their info in {sidecar.name}; re-save "
                        f"with `lrt-jax steer --overwrite`, or in Python: save_vector(SteeringVector(array, "
                        f"VectorInfo.from_dict(json.load(open({str(sidecar)!r}))['info'])), {str(path)!r}, "
                        "overwrite=True).")
    if not isinstance(artifact.tree, dict) or set(artifact.tree) != {"vector"}:
        raise ValueError(f"{path} holds no single tensor named 'vector'; it was not written by save_vector.")
    try:
        vector = SteeringVector(artifact.tree["vector"], artifact.info)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    info = vector.metadata
    try:
        check_vector_fits(vector, site=info.site if site is None else site,
                          d_model=info.d_model if d_model is None else d_model, model_name=model_name)
    except VectorMismatchError as error:
        raise VectorMismatchError(f"{path}: {error}") from None
    return vector
