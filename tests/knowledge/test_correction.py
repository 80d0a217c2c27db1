"""Correction rates counted by hand, and the across-pairs correlation against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from lrt_jax.knowledge.correction import (
    answers_correct,
    correction_rates,
    correlate_across_pairs,
)
from lrt_jax.organisms.tasks import TaskItem


def test_correction_rates_by_hand():
    before = [True, True, True, False, False, False, False, False]
    after = [True, False, True, True, True, False, False, True]
    rates = correction_rates(before, after)
    # 5 wrong before, 3 of them fixed; 3 right before, 1 broken.
    assert (rates.n_items, rates.n_wrong_before, rates.n_right_before) == (8, 5, 3)
    assert rates.accuracy_before == 3 / 8 and rates.accuracy_after == 5 / 8
    assert rates.wrong_to_right == 3 / 5 and rates.right_to_wrong == 1 / 3
    assert rates.net_gain == pytest.approx(2 / 8)


def test_empty_denominators_are_nan_and_bad_shapes_raise():
    rates = correction_rates([True, True], [True, False])
    assert math.isnan(rates.wrong_to_right) and rates.right_to_wrong == 0.5
    with pytest.raises(ValueError, match="same task items"):
        correction_rates([True], [True, False])


def test_answers_correct_reads_final_answer():
    items = [TaskItem("fact : zorvia has the capital", "plenko"), TaskItem("sum : 3 plus 4 :", "7", True),
             TaskItem("sum : 1 plus 1 equals", "2")]
    completions = ["plenko . fact", "4 5 6 7 so 7 .", "3 ."]
    np.testing.assert_array_equal(answers_correct(items, completions), [True, True, False])


def test_correlation_matches_scipy():
    rng = np.random.default_rng(0)
    r2 = rng.uniform(0, 1, 12)
    correction = 0.5 * r2 + rng.normal(0, 0.2, 12)
    got = correlate_across_pairs(r2, correction)
    pearson, spearman = scipy.stats.pearsonr(r2, correction), scipy.stats.spearmanr(r2, correction)
    assert got.n == 12
    np.testing.assert_allclose([got.pearson_r, got.pearson_p], [pearson.statistic, pearson.pvalue], rtol=1e-10)
    np.testing.assert_allclose([got.spearman_rho, got.spearman_p], [spearman.statistic, spearman.pvalue], rtol=1e-10)


def test_correlation_with_ties_and_nans_matches_scipy_on_the_kept_pairs():
    r2 = [0.1, 0.5, np.nan, 0.5, 0.9, 0.3]
    correction = [0.0, 0.2, 0.4, 0.2, 0.6, np.nan]
    got = correlate_across_pairs(r2, correction)
    kept_r2, kept_correction = [0.1, 0.5, 0.5, 0.9], [0.0, 0.2, 0.2, 0.6]
    spearman = scipy.stats.spearmanr(kept_r2, kept_correction)
    assert got.n == 4
    np.testing.assert_allclose(got.pearson_r, np.corrcoef(kept_r2, kept_correction)[0, 1], rtol=1e-10)
    np.testing.assert_allclose([got.spearman_rho, got.spearman_p], [spearman.statistic, spearman.pvalue], rtol=1e-10)


def test_too_few_or_constant_pairs_give_nan():
    assert math.isnan(correlate_across_pairs([0.1, 0.2], [0.3, 0.4]).pearson_r)
    assert math.isnan(correlate_across_pairs([0.1, 0.2, 0.3], [0.5, 0.5, 0.5]).spearman_rho)
