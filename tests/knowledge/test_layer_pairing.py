"""Relative-depth pairing and interpolation weights, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lrt_jax.knowledge.layer_pairing import (
    interpolate_teacher_layers, pair_layers_by_relative_depth, pair_student_layer)


def test_four_student_layers_on_six_teacher_layers():
    # p(s) = s * 5 / 3 = 0, 5/3, 10/3, 5.
    pairings = pair_layers_by_relative_depth(4, 6)
    assert [(p.teacher_lower, p.teacher_upper) for p in pairings] == [(0, 0), (1, 2), (3, 4), (5, 5)]
    np.testing.assert_allclose([p.teacher_position for p in pairings], [0, 5 / 3, 10 / 3, 5])
    np.testing.assert_allclose([p.upper_weight for p in pairings], [0, 2 / 3, 1 / 3, 0])
    np.testing.assert_allclose([p.lower_weight for p in pairings], [1, 1 / 3, 2 / 3, 1])
    assert pairings[2].teacher_sites() == ("layers.3.resid_post", "layers.4.resid_post")
    assert [p.nearest_teacher_layer for p in pairings] == [0, 2, 3, 5]


def test_deeper_student_and_degenerate_depths():
    # p(s) = s * 2 / 4 for a 5-layer student on a 3-layer teacher.
    pairings = pair_layers_by_relative_depth(5, 3)
    assert [(p.teacher_lower, p.upper_weight) for p in pairings] == [(0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5), (2, 0.0)]
    identity = pair_layers_by_relative_depth(3, 3)
    assert all(p.teacher_lower == p.teacher_upper == p.student_layer and p.lower_weight == 1.0 for p in identity)
    assert pair_student_layer(0, 1, 6)[1:] == (5.0, 5, 5, 1.0, 0.0)


def test_interpolation_mixes_the_two_nearest_layers():
    teacher = np.arange(6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3)
    pairing = pair_student_layer(1, 4, 6)
    np.testing.assert_allclose(interpolate_teacher_layers(pairing, teacher), teacher[1] / 3 + 2 * teacher[2] / 3,
                               rtol=1e-6)
    np.testing.assert_array_equal(interpolate_teacher_layers(pair_student_layer(3, 4, 6), list(teacher)), teacher[5])


def test_out_of_range_layers_are_rejected():
    with pytest.raises(ValueError, match="out of range"):
        pair_student_layer(4, 4, 6)
    with pytest.raises(ValueError, match="needs teacher layer 2"):
        interpolate_teacher_layers(pair_student_layer(1, 4, 6), np.zeros((2, 3)))
