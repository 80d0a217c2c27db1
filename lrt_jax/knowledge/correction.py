"""Correction rates of a knowledge transfer, and their correlation with map quality.

A transfer changes which task items the student gets right. With ``before`` and
``after`` the per-item correctness (bool ``[n_items]``) without and with transfer:

    accuracy          = mean(after)
    wrong_to_right    = #(¬before ∧ after) / #(¬before)    (share of the student's errors fixed)
    right_to_wrong    = #(before ∧ ¬after) / #(before)     (share of its right answers broken)
    net_gain          = mean(after) − mean(before)

A share whose denominator is empty is NaN. Across teacher–student pairs,
:func:`correlate_across_pairs` gives Pearson's r and Spearman's ρ (Pearson of
average ranks) between a map-quality number (R²) and a correction number, with the
two-sided p-values of the t-test ``t = r·√((n − 2)/(1 − r²))`` on ``n − 2`` degrees of
freedom (what :func:`scipy.stats.pearsonr` reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.stats

from lrt_jax.organisms.tasks import TaskItem, extract_final_answer


class CorrectionRates(NamedTuple):
    """How a transfer changed a student's answers on ``n_items`` items (see the module docstring)."""

    n_items: int
    accuracy_before: float
    accuracy_after: float
    wrong_to_right: float
    right_to_wrong: float
    net_gain: float
    n_wrong_before: int
    n_right_before: int


class Correlation(NamedTuple):
    """Pearson and Spearman correlation of two paired samples of size ``n``, with two-sided p-values."""

    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float


def answers_correct(items: Sequence[TaskItem], completions: Sequence[str]) -> np.ndarray:
    """Bool ``[n_items]``: the completion's final answer word equals the item's answer."""
    if len(items) != len(completions):
        raise ValueError(f"Got {len(completions)} completions for {len(items)} task items.")
    return np.array([extract_final_answer(text) == item.answer for item, text in zip(items, completions)], bool)


def _share(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def correction_rates(correct_before, correct_after) -> CorrectionRates:
    """Correction rates from per-item correctness without (``correct_before``) and with transfer, bool ``[n]``."""
    before, after = np.asarray(correct_before, bool), np.asarray(correct_after, bool)
    if before.ndim != 1 or before.shape != after.shape or before.size == 0:
        raise ValueError(f"correct_before {before.shape} and correct_after {after.shape} must be equal, non-empty "
                         "1-D arrays over the same task items.")
    n_wrong, n_right = int((~before).sum()), int(before.sum())
    return CorrectionRates(
        n_items=int(before.size),
        accuracy_before=float(before.mean()),
        accuracy_after=float(after.mean()),
        wrong_to_right=_share(int((~before & after).sum()), n_wrong),
        right_to_wrong=_share(int((before & ~after).sum()), n_right),
        net_gain=float(after.mean() - before.mean()),
        n_wrong_before=n_wrong,
        n_right_before=n_right,
    )


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    x, y = x - x.mean(), y - y.mean()
    scale = np.sqrt(np.sum(x * x) * np.sum(y * y))
    if scale == 0:
        return float("nan"), float("nan")
    r = float(np.clip(np.sum(x * y) / scale, -1.0, 1.0))
    degrees = x.size - 2
    if abs(r) == 1.0:
        return r, 0.0
    t = r * np.sqrt(degrees / (1.0 - r * r))
    return r, float(2.0 * scipy.stats.t.sf(abs(t), degrees))


def correlate_across_pairs(map_quality: Sequence[float], correction: Sequence[float]) -> Correlation:
    """Correlation across teacher–student pairs of ``map_quality`` (e.g. R²) and ``correction`` (e.g. wrong→right).

    Pairs where either value is NaN are dropped; fewer than 3 left, or a constant
    sample, gives NaN correlations.
    """
    x, y = np.asarray(map_quality, np.float64), np.asarray(correction, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"map_quality {x.shape} and correction {y.shape} must be 1-D with one value per pair.")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        nan = float("nan")
        return Correlation(int(x.size), nan, nan, nan, nan)
    pearson_r, pearson_p = _pearson(x, y)
    spearman_rho, spearman_p = _pearson(scipy.stats.rankdata(x), scipy.stats.rankdata(y))
    return Correlation(int(x.size), pearson_r, pearson_p, spearman_rho, spearman_p)
