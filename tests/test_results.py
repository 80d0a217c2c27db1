"""Results tables: export round trips, the α × item grid, and the plot."""

import csv
import json

import numpy as np
import pytest
import scipy.stats

from lrt_jax.results import COLUMNS, ResultRecord, ResultsTable, plot_propensity_vs_alpha

RNG = np.random.default_rng(0)
ALPHAS = [-1.0, 0.0, 1.5]
VALUES = {name: RNG.uniform(size=(3, 4)) for name in ("native", "transferred")}
TABLE = ResultsTable(
    tuple(
        ResultRecord("caa/refusal", "tiny", name, alpha, item, "p_matching", float(VALUES[name][a, item]))
        for name in VALUES
        for a, alpha in enumerate(ALPHAS)
        for item in range(4)
    )
)


def test_json_and_csv_round_trip(tmp_path):
    TABLE.to_json(tmp_path / "r.json")
    TABLE.to_csv(tmp_path / "r.csv")
    assert ResultsTable.from_json(tmp_path / "r.json") == TABLE
    assert ResultsTable.from_csv(tmp_path / "r.csv") == TABLE
    with (tmp_path / "r.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 24
    assert json.loads((tmp_path / "r.json").read_text())["rows"][5]["value"] == VALUES["native"][1, 1]


def test_from_csv_rejects_other_columns(tmp_path):
    (tmp_path / "bad.csv").write_text("task,alpha\nx,1\n")
    with pytest.raises(ValueError, match="expected"):
        ResultsTable.from_csv(tmp_path / "bad.csv")


def test_propensity_matrix_rebuilds_the_grid_and_detects_gaps():
    shuffled = ResultsTable(tuple(RNG.permutation(np.array(TABLE.records, dtype=object))))
    alphas, values = shuffled.propensity_matrix(vector="transferred", metric="p_matching")
    np.testing.assert_array_equal(alphas, ALPHAS)
    np.testing.assert_array_equal(values, VALUES["transferred"])
    with pytest.raises(ValueError, match="cells"):
        ResultsTable(TABLE.records[1:]).propensity_matrix(vector="native", metric="p_matching")


def test_plot_is_written(tmp_path):
    path = tmp_path / "propensity.png"
    plot_propensity_vs_alpha(TABLE, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mixed = ResultsTable(TABLE.records + (ResultRecord("t", "m", "native", 0.0, 0, "logit_diff", 1.0),))
    with pytest.raises(ValueError, match="metric="):
        plot_propensity_vs_alpha(mixed, tmp_path / "x.png")


def test_standard_error_band_matches_scipy(tmp_path, monkeypatch):
    captured = {}
    from matplotlib.axes import Axes

    original = Axes.fill_between

    def spy(self, x, low, high, **kwargs):
        captured.setdefault("bands", []).append((np.asarray(low), np.asarray(high)))
        return original(self, x, low, high, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", spy)
    plot_propensity_vs_alpha(TABLE, tmp_path / "p.png")
    low, high = captured["bands"][0]  # groups are sorted: "native" first
    np.testing.assert_allclose((high - low) / 2, scipy.stats.sem(VALUES["native"], axis=1), rtol=1e-12)
    np.testing.assert_allclose((high + low) / 2, VALUES["native"].mean(axis=1), rtol=1e-12)
