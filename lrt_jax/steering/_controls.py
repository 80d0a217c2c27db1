"""A transfer experiment's vectors in one call: the transferred ones and their controls.

Whether a mapped vector steers the target model only means something beside
vectors that should not (or should) work equally well:

========================= ===========================================================
name                      vector (all at the target site, width ``d_target``)
========================= ===========================================================
``native``                estimated in the target model itself (when given): the reference
``transferred_linear``    ``v A`` (:func:`~lrt_jax.steering.transfer_vector`, ``mode="linear"``)
``transferred_affine``    ``v A + b`` (``mode="affine"``)
``unmapped``              the source coordinates zero-padded or truncated to ``d_target``:
                          what reusing the raw vector without a map does
``random`` / ``random_i`` a uniformly random direction with the reference's norm (the
                          native vector's, else the first transferred vector's): what any
                          push of that size does
========================= ===========================================================

:func:`with_controls` returns them as ``{name: SteeringVector}``, in that order, ready
for the scorers of :mod:`lrt_jax.evaluation` (which take ``{name: vector}``).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from lrt_jax.steering._checks import check_rank
from lrt_jax.steering._transfer import TransferMode, transfer_vector
from lrt_jax.steering._vector import SteeringVector


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


def with_controls(source_vector: SteeringVector, map_state, *, key: jax.Array, target_model: str, target_site: str,
                  native: SteeringVector | None = None, modes: Sequence[TransferMode] = ("linear", "affine"),
                  n_random: int = 1, map_info: Mapping[str, str] | None = None) -> dict[str, SteeringVector]:
    """The native vector, the source vector transferred in each mode, and the controls (module table).

    Args:
      source_vector: the source model's :class:`SteeringVector`, ``[d_source]``.
      map_state: the fitted map, as for :func:`~lrt_jax.steering.transfer_vector`.
      key: PRNG key of the random controls: with ``n_random=1`` the one ``random``
        vector is drawn from ``key`` itself, otherwise ``random_i`` from
        ``jax.random.split(key, n_random)[i]``.
      target_model, target_site: where the vectors go, recorded in their info.
      native: the target model's own vector, if any; it sets the random controls' norm.
      modes: transfer modes to include (``"linear"``, ``"affine"``; ``"means"`` needs
        the class means, so call :func:`~lrt_jax.steering.transfer_vector` for it).
      n_random: number of random controls.
      map_info: description of the map, recorded in the transferred vectors' info.

    Returns:
      ``{"native"?, "transferred_<mode>"…, "unmapped", "random" | "random_0"…}``.

    Example:
      >>> vectors = with_controls(source_vector, state, key=jax.random.key(0), target_model=lm.name,
      ...                         target_site="layers.20.resid_post", native=native)
      >>> table = evaluation.score_propensity(lm, items, fmt=fmt, vectors=vectors, alphas=alphas, site=...)
    """
    if not modes:
        raise ValueError('modes is empty; give at least one transfer mode, e.g. modes=("linear",).')
    if n_random < 1:
        raise ValueError(f"n_random must be at least 1, got {n_random}.")
    transferred = {f"transferred_{mode}": transfer_vector(source_vector, map_state, mode=mode,
                                                          target_model=target_model, target_site=target_site,
                                                          map_info=map_info)
                   for mode in modes}
    reference = native if native is not None else next(iter(transferred.values()))
    vectors = {**({"native": native} if native is not None else {}), **transferred}
    vectors["unmapped"] = unmapped_vector(source_vector, reference.metadata.d_model, target_model=target_model,
                                          target_site=target_site)
    if n_random == 1:
        vectors["random"] = random_vector_like(reference, key)
    else:
        for index, random_key in enumerate(jax.random.split(key, n_random)):
            vectors[f"random_{index}"] = random_vector_like(reference, random_key)
    return vectors
