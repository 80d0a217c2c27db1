"""Pairing student layers with teacher layers by relative depth.

Two models of different depth compute "the same stage" at the same *fraction* of
their depth. With ``S`` student layers and ``T`` teacher layers (indices of
``layers.{i}.resid_post``), student layer ``s`` sits at the fractional teacher
position::

    p(s) = s · (T − 1) / (S − 1)          (S > 1; a one-layer student uses p = T − 1)

so the first layers pair (``p(0) = 0``), the last layers pair (``p(S−1) = T−1``), and
everything in between is spaced evenly. A fractional position falls between the two
nearest teacher layers ``lower = ⌊p⌋`` and ``upper = lower + 1`` (``upper = lower`` when
``p`` is an integer); the
teacher activation at ``p`` is their linear interpolation::

    teacher(p) = (1 − (p − lower)) · teacher[lower] + (p − lower) · teacher[upper]

Positions are computed with exact fractions, so an integer position gives weights
exactly ``(1, 0)`` and the same layer twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

import jax


class LayerPairing(NamedTuple):
    """Student layer ``student_layer`` ↔ ``lower_weight · teacher[lower] + upper_weight · teacher[upper]``."""

    student_layer: int
    teacher_position: float
    teacher_lower: int
    teacher_upper: int
    lower_weight: float
    upper_weight: float

    @property
    def nearest_teacher_layer(self) -> int:
        """The teacher layer nearest to ``teacher_position``, for maps between two single sites."""
        return round(self.teacher_position)

    def teacher_sites(self, kind: str = "resid_post") -> tuple[str, str]:
        """The two teacher site names to capture, e.g. ``("layers.3.resid_post", "layers.4.resid_post")``."""
        return f"layers.{self.teacher_lower}.{kind}", f"layers.{self.teacher_upper}.{kind}"


def pair_student_layer(student_layer: int, n_student_layers: int, n_teacher_layers: int) -> LayerPairing:
    """The relative-depth pairing of one student layer (see module doc for the formula)."""
    if n_student_layers < 1 or n_teacher_layers < 1:
        raise ValueError(f"Both models need at least one layer; got {n_student_layers} student, {n_teacher_layers} teacher.")
    if not 0 <= student_layer < n_student_layers:
        raise ValueError(f"student_layer {student_layer} is out of range for a {n_student_layers}-layer student.")
    if n_student_layers == 1:
        position = Fraction(n_teacher_layers - 1)
    else:
        position = Fraction(student_layer * (n_teacher_layers - 1), n_student_layers - 1)
    lower = int(position)  # floor: position is non-negative
    upper_weight = position - lower
    upper = lower if upper_weight == 0 else lower + 1
    return LayerPairing(student_layer, float(position), lower, upper, float(1 - upper_weight), float(upper_weight))


def pair_layers_by_relative_depth(n_student_layers: int, n_teacher_layers: int) -> tuple[LayerPairing, ...]:
    """One :class:`LayerPairing` per student layer, in layer order."""
    return tuple(pair_student_layer(s, n_student_layers, n_teacher_layers) for s in range(n_student_layers))


def interpolate_teacher_layers(pairing: LayerPairing, teacher_layers: Sequence[jax.Array] | jax.Array) -> jax.Array:
    """The teacher activation at ``pairing.teacher_position``.

    Args:
      pairing: from :func:`pair_student_layer`.
      teacher_layers: per-layer activations indexable by layer, e.g. a list of
        ``[..., d]`` arrays or one stacked ``[layers, ..., d]`` array.

    Returns:
      ``[..., d]``, ``lower_weight · teacher_layers[lower] + upper_weight · teacher_layers[upper]``.
    """
    if len(teacher_layers) <= pairing.teacher_upper:
        raise ValueError(
            f"The pairing needs teacher layer {pairing.teacher_upper} but only {len(teacher_layers)} layers were given."
        )
    lower, upper = teacher_layers[pairing.teacher_lower], teacher_layers[pairing.teacher_upper]
    return pairing.lower_weight * lower + pairing.upper_weight * upper
