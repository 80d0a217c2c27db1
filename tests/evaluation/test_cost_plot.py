"""plot_effect_vs_cost: the plotted points are the per-(vector, α) means of the two tables."""

from __future__ import annotations

import numpy as np
import pytest

from lrt_jax.evaluation import plot_effect_vs_cost
from lrt_jax.results import ResultRecord, ResultsTable


def _table(task, metric, values):  # values: {(vector, alpha): [per-item values]}
    return ResultsTable(tuple(ResultRecord(task, "m", v, a, i, metric, x)
                              for (v, a), xs in values.items() for i, x in enumerate(xs)))


EFFECT = {("native", -1.0): [1.0, 3.0], ("native", 0.0): [0.0, 1.0], ("native", 2.0): [5.0, 7.0],
          ("random", 0.0): [2.0, 2.0], ("random", 2.0): [4.0, -1.0], ("only_effect", 0.0): [9.0, 9.0]}
COST = {("native", -1.0): [0.2, 0.4, 0.6], ("native", 0.0): [0.0, 0.0, 0.0], ("native", 2.0): [1.0, 2.0, 6.0],
        ("random", 0.0): [0.0, 0.0, 0.0], ("random", 2.0): [0.5, 0.5, 0.2], ("random", 5.0): [3.0, 3.0, 3.0]}


def test_points_are_hand_computed_means(tmp_path):
    effect = _table("ab", "logit_diff", EFFECT)
    extra = _table("ab", "p_matching", {key: [100.0] for key in EFFECT})  # another metric is ignored
    effect = ResultsTable(effect.records + extra.records)
    cost = _table("cost", "kl_next_token", COST)
    path = tmp_path / "plot.png"
    curves = plot_effect_vs_cost(effect, cost, path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert set(curves) == {"native", "random"}  # only_effect has no cost rows; random α=5 no effect rows
    np.testing.assert_allclose(curves["native"][0], [0.4, 0.0, 3.0])
    np.testing.assert_allclose(curves["native"][1], [2.0, 0.5, 6.0])
    np.testing.assert_allclose(curves["random"][0], [0.0, 0.4])
    np.testing.assert_allclose(curves["random"][1], [2.0, 1.5])


def test_other_metrics_and_errors(tmp_path):
    effect = _table("ab", "p_matching", EFFECT)
    cost = _table("cost", "perplexity", COST)
    curves = plot_effect_vs_cost(effect, cost, tmp_path / "p.png", effect_metric="p_matching",
                                 cost_metric="perplexity")
    np.testing.assert_allclose(curves["native"][0], [0.4, 0.0, 3.0])
    with pytest.raises(ValueError, match="no rows with metric='logit_diff'"):
        plot_effect_vs_cost(effect, cost, tmp_path / "q.png", cost_metric="perplexity")
    disjoint = _table("cost", "kl_next_token", {("other", 0.0): [1.0]})
    with pytest.raises(ValueError, match="share no"):
        plot_effect_vs_cost(_table("ab", "logit_diff", EFFECT), disjoint, tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()
