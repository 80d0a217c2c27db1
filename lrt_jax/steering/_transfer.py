"""Carrying a steering vector from a source model to a target model through a fitted map.

A mapper fitted on paired activations, ``y ≈ x @ A + b`` with ``A: [d_source, d_target]``
and ``b: [d_target]``, can move a *direction* in three ways the literature uses:

* ``"linear"`` — ``v @ A``: a difference of activations maps through the linear
  part only, since the bias cancels in ``(x⁺ @ A + b) - (x⁻ @ A + b)``.
* ``"affine"`` — ``v @ A + b``: treats the vector as a point; this is the choice
  of the Linear Representation Transferability paper.
* ``"means"`` — ``f(μ⁺) - f(μ⁻)``: map both class means, then subtract. For an
  affine ``f`` this equals ``"linear"`` exactly; it differs for non-affine maps,
  which is why it takes an ``apply_fn``.

Controls for a transfer experiment live here too: :func:`random_vector_like`
(same norm, random direction) and :func:`unmapped_vector` (the source vector
zero-padded or truncated to the target width, i.e. no map at all).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax.steering._checks import check_finite, check_rank, check_same_width
from lrt_jax.steering._vector import SteeringVector, VectorInfo

TransferMode = Literal["linear", "affine", "means"]


class TransferResult(NamedTuple):
    """Output of :func:`transfer_vector`.

    Attributes:
      vector: the mapped :class:`SteeringVector`, at the target site and width.
      cosine_with_native: cosine between it and the ``native`` vector, or ``None``
        when no native vector was given.
    """

    vector: SteeringVector
    cosine_with_native: float | None


def _linear_and_bias(map_state) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(A [d_source, d_target], b [d_target])`` of a map state.

    ``map_state`` is either an explicit affine map, a plain tuple ``(A, b)``, or a
    state from :mod:`lrt_jax.mappers`, read through ``mappers.linear`` and
    ``mappers.bias``. Only an exact ``tuple`` counts as explicit, so a mapper state
    that is a ``NamedTuple`` is never misread as ``(A, b)``.
    """
    if type(map_state) is tuple:
        if len(map_state) != 2:
            raise ValueError(f"An explicit affine map is the pair (A, b); got a tuple of {len(map_state)} items.")
        linear, bias = (jnp.asarray(part) for part in map_state)
    else:
        # Imported here so that steering does not depend on mappers for tuple maps.
        from lrt_jax import mappers

        linear, bias = mappers.linear(map_state), mappers.bias(map_state)
    check_rank("linear part A", linear, 2, "[d_source, d_target]")
    check_rank("bias b", bias, 1, "[d_target]")
    if bias.shape[0] != linear.shape[1]:
        raise ValueError(f"A maps to width {linear.shape[1]} but b has width {bias.shape[0]}.")
    return linear, bias


def cosine_similarity(a, b) -> float:
    """Cosine of the angle between two ``[d]`` vectors."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def transfer_vector(
    vector: SteeringVector,
    map_state,
    *,
    mode: TransferMode,
    target_model: str,
    target_site: str,
    means: tuple[Any, Any] | None = None,
    apply_fn: Callable | None = None,
    target_norm: float | None = None,
    native: SteeringVector | Any | None = None,
    map_info: Mapping[str, str] | None = None,
) -> TransferResult:
    """Map ``vector`` into the target model's activation space.

    Args:
      vector: source :class:`SteeringVector`, ``[d_source]``.
      map_state: ``(A, b)`` arrays (an explicit affine map ``x @ A + b``) or a
        fitted :mod:`lrt_jax.mappers` state.
      mode: ``"linear"`` (``v @ A``), ``"affine"`` (``v @ A + b``) or ``"means"``
        (``apply_fn(state, μ⁺) - apply_fn(state, μ⁻)``); see the module docstring.
      target_model: name or path of the target model, recorded in the metadata.
      target_site: the target site the map was fitted to, recorded in the metadata.
      means: ``(μ⁺ [d_source], μ⁻ [d_source])``, required by ``"means"``. In that
        mode the mapped value comes from the means; ``vector`` supplies the provenance.
      apply_fn: ``apply(state, x [n, d_source]) -> [n, d_target]`` for ``"means"``;
        ``None`` applies the affine map ``x @ A + b``. Needed for non-affine
        mapper states, which have no ``A`` and ``b``.
      target_norm: if given, rescale the result to this L2 norm (e.g. the norm of
        the native vector, or a typical norm at the target site).
      native: a vector estimated directly in the target model (``SteeringVector``
        or ``[d_target]`` array) to report the cosine with.
      map_info: ``str -> str`` description of the map, stored in the metadata.

    Returns:
      A :class:`TransferResult`.
    """
    source = jnp.asarray(vector.vector)
    check_rank("vector.vector", source, 1, "[d_source]")
    check_finite("vector.vector", source)
    if mode in ("linear", "affine"):
        linear, bias = _linear_and_bias(map_state)
        if source.shape[0] != linear.shape[0]:
            raise ValueError(
                f"The map expects source width {linear.shape[0]} but the vector has width {source.shape[0]}; "
                f"was the map fitted at {vector.metadata.site} of {vector.metadata.model}?"
            )
        mapped = source @ linear + bias if mode == "affine" else source @ linear
    elif mode == "means":
        if means is None:
            raise ValueError('mode="means" needs means=(mu_pos, mu_neg), the source-model class means.')
        stacked = jnp.stack([jnp.asarray(m) for m in means])
        check_rank("means", stacked, 2, "two [d_source] arrays")
        check_finite("means", stacked)
        check_same_width("means", stacked, "vector.vector", source)
        if apply_fn is None:
            linear, bias = _linear_and_bias(map_state)
            mapped_means = stacked @ linear + bias[None, :]
        else:
            mapped_means = apply_fn(map_state, stacked)
        mapped = mapped_means[0] - mapped_means[1]
    else:
        raise ValueError(f'mode must be "linear", "affine" or "means", got {mode!r}.')

    normalisation = "as mapped"
    if target_norm is not None:
        mapped = mapped * (target_norm / jnp.linalg.norm(mapped))
        normalisation = f"norm={target_norm:g}"

    info = VectorInfo(
        model=target_model,
        site=target_site,
        d_model=int(mapped.shape[0]),
        position_rule=vector.metadata.position_rule,
        estimator=vector.metadata.estimator,
        normalisation=normalisation,
        dataset=vector.metadata.dataset,
        count=vector.metadata.count,
        transferred_from=vector.metadata,
        transfer_mode=mode,
        map_info=tuple((str(k), str(v)) for k, v in (map_info or {}).items()),
    )
    result = SteeringVector(mapped, info)

    cosine = None
    if native is not None:
        native_array = native.vector if isinstance(native, SteeringVector) else native
        if np.shape(native_array) != mapped.shape:
            raise ValueError(f"native has shape {np.shape(native_array)}, the transferred vector {mapped.shape}.")
        cosine = cosine_similarity(mapped, native_array)
    return TransferResult(result, cosine)


def random_vector_like(vector: SteeringVector, key: jax.Array) -> SteeringVector:
    """A control vector: same norm, site and width as ``vector``, uniformly random direction."""
    direction = jax.random.normal(key, jnp.shape(vector.vector))
    scaled = direction * (jnp.linalg.norm(vector.vector) / jnp.linalg.norm(direction))
    info = dataclasses.replace(vector.metadata, estimator=f"random_like({vector.metadata.estimator})")
    return SteeringVector(scaled, info)


def unmapped_vector(vector: SteeringVector, d_target: int, *, target_model: str, target_site: str) -> SteeringVector:
    """A control vector: the source vector zero-padded or truncated to ``d_target``, with no map.

    It shows how much of a transfer's effect a map adds over reusing the raw
    coordinates, which only share meaning by accident.
    """
    source = jnp.asarray(vector.vector)
    check_rank("vector.vector", source, 1, "[d_source]")
    if d_target < 1:
        raise ValueError(f"d_target must be a positive width, got {d_target}.")
    resized = jnp.pad(source, (0, max(d_target - source.shape[0], 0)))[:d_target]
    info = dataclasses.replace(
        vector.metadata,
        model=target_model,
        site=target_site,
        d_model=d_target,
        transferred_from=vector.metadata,
        transfer_mode="unmapped",
        map_info=(),
    )
    return SteeringVector(resized, info)
