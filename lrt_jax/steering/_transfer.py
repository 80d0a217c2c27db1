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

:func:`transfer_vector` returns a :class:`~lrt_jax.steering.SteeringVector` whose info
records the target model and site, the mode, the map (``map_info``: the solver and
where it was fitted, as far as known) and the source vector's own info
(``transferred_from``). How the result relates to other vectors is a separate call:
:func:`transfer_diagnostics` (cosines with the native vector and the source, norms)
or :func:`cosine_similarity`. The controls of a transfer experiment are in
:mod:`lrt_jax.steering._controls`.

All of it traces: ``jax.jit(transfer_vector, static_argnames=...)`` and ``jax.vmap``
over a stack of source vectors work, since the info is static pytree data.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping, NamedTuple

import jax.numpy as jnp

from lrt_jax.steering._checks import check_finite, check_rank, check_same_width
from lrt_jax.steering._vector import SteeringVector

TransferMode = Literal["linear", "affine", "means"]


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


def _array(vector) -> jnp.ndarray:
    return jnp.asarray(vector.vector if isinstance(vector, SteeringVector) else vector)


def cosine_similarity(a, b) -> jnp.ndarray:
    """Cosine of the angle between two ``[d]`` vectors (arrays or :class:`SteeringVector`); a scalar array."""
    a, b = _array(a), _array(b)
    return a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


class TransferDiagnostics(NamedTuple):
    """How a transferred vector compares with its source and with the target's native vector.

    Attributes:
      cosine_with_native: cosine of the transferred and the native vector; ``None`` without a native one.
      norm: ``‖transferred‖``.
      source_norm: ``‖source‖`` (in the source model's units).
      native_norm: ``‖native‖``; ``None`` without a native vector.
    """

    cosine_with_native: jnp.ndarray | None
    norm: jnp.ndarray
    source_norm: jnp.ndarray
    native_norm: jnp.ndarray | None


def transfer_diagnostics(source: SteeringVector, transferred: SteeringVector,
                         native: SteeringVector | Any | None = None) -> TransferDiagnostics:
    """Cosine with the native vector and the norms of a transfer; scalar arrays, so it traces.

    Args:
      source: the vector before the transfer, ``[d_source]``.
      transferred: the result of :func:`transfer_vector`, ``[d_target]``.
      native: a vector estimated directly in the target model (``SteeringVector`` or
        ``[d_target]`` array), or ``None``.
    """
    mapped = _array(transferred)
    cosine = native_norm = None
    if native is not None:
        native_array = _array(native)
        if native_array.shape != mapped.shape:
            raise ValueError(f"native has shape {native_array.shape}, the transferred vector {mapped.shape}; "
                             "estimate the native vector at the transfer's target site.")
        cosine, native_norm = cosine_similarity(mapped, native_array), jnp.linalg.norm(native_array)
    return TransferDiagnostics(cosine, jnp.linalg.norm(mapped), jnp.linalg.norm(_array(source)), native_norm)


def _describe_map(map_state, vector: SteeringVector, target_model: str, target_site: str,
                  map_info: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``map_info`` over defaults: the solver (the state's type) and the sites and models at both ends."""
    solver = "explicit (A, b)" if type(map_state) is tuple else type(map_state).__name__
    described = {"solver": solver, "source_model": vector.metadata.model, "source_site": vector.metadata.site,
                 "target_model": target_model, "target_site": target_site, **(map_info or {})}
    return tuple((str(k), str(v)) for k, v in described.items())


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
    map_info: Mapping[str, str] | None = None,
) -> SteeringVector:
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
      map_info: ``str -> str`` description of the map (e.g. ``{"solver": "ridge",
        "alpha": "10"}``), stored in the metadata over the defaults: ``solver`` (the
        state's type name), ``source_model``/``source_site`` (the vector's) and
        ``target_model``/``target_site``.

    Returns:
      The mapped :class:`SteeringVector` ``[d_target]``: its info has the target model and
      site, ``transfer_mode=mode``, ``map_info`` and ``transferred_from`` (the source
      vector's info). Compare it with a native vector by :func:`transfer_diagnostics`.

    Example:
      >>> mapped = transfer_vector(source_vector, state, mode="linear", target_model=lm.name,
      ...                          target_site="layers.20.resid_post")
      >>> transfer_diagnostics(source_vector, mapped, native).cosine_with_native
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

    # Estimator, position rule, dataset and counts stay those of the source estimate.
    info = dataclasses.replace(
        vector.metadata,
        model=target_model,
        site=target_site,
        d_model=int(mapped.shape[0]),
        normalisation=normalisation,
        transferred_from=vector.metadata,
        transfer_mode=mode,
        map_info=_describe_map(map_state, vector, target_model, target_site, map_info),
    )
    return SteeringVector(mapped, info)
