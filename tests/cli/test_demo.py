"""A reduced ``lrt-jax demo`` (tiny organisms, fewer prompts) end to end, and its report's contents."""

import json

import numpy as np
import pytest

from lrt_jax.cli import main
from lrt_jax.cli.demo import ATTRIBUTES
from lrt_jax.lrt.demo import relative_depth_layer
from lrt_jax.results import ResultsTable


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("organisms")
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--cache-dir", str(cache), "--out", str(out)]) == 0
    return out, cache


def test_demo_writes_report_plots_and_results_for_every_attribute_and_target(demo_run):
    out, _ = demo_run
    results = json.loads((out / "results.json").read_text())
    assert set(results["attributes"]) == set(ATTRIBUTES)
    assert set(results["targets"]) == {"large", "moe"}
    for attribute in ATTRIBUTES:
        assert (out / f"steering_{attribute}.png").stat().st_size > 10_000
    assert (out / "r2_layer_pairs.png").read_bytes().startswith(b"\x89PNG")
    report = (out / "report.md").read_text()
    for attribute in ATTRIBUTES:
        assert f"| {attribute} | large |" in report and f"| {attribute} | moe |" in report

    alphas = np.asarray(results["config"]["alphas"])
    assert alphas[0] == 0.0
    scores = ResultsTable.from_json(out / "scores.json")
    for row in results["summary"]:
        steered = scores.select(task=row["attribute"], model=results["targets"][row["target"]])
        _, native = steered.propensity_matrix(vector="native", metric="propensity")
        assert native.shape == (len(alphas), results["config"]["n_probe_prompts"])
        # The summary's headline numbers, recomputed by hand from the raw propensity rows.
        assert row["native_shift"] == pytest.approx(native[-1].mean() - native[0].mean(), abs=1e-6)
        _, linear = steered.propensity_matrix(vector="transferred_linear", metric="propensity")
        expected = (linear[-1].mean() - linear[0].mean()) / (native[-1].mean() - native[0].mean())
        assert row["relative_shift"]["transferred_linear"] == pytest.approx(expected, rel=1e-5)
        assert -1.0 <= row["pearson_linear"] <= 1.0
    for name, maps in results["maps"].items():
        n_target = 3 if name == "large" else 2
        assert np.asarray(maps["r2"]).shape == (2, n_target)  # every tiny-small layer × every target layer
        assert np.all(np.asarray(maps["r2"]) <= 1.0)


def test_demo_layer_pairs_follow_relative_depth(demo_run):
    out, _ = demo_run
    results = json.loads((out / "results.json").read_text())
    source_layer = results["config"]["source_layer"]
    for name, layer in results["config"]["target_layers"]:
        assert layer == relative_depth_layer(source_layer, 2, 3 if name == "large" else 2)
    assert relative_depth_layer(2, 4, 6) == 3 and relative_depth_layer(3, 4, 6) == 5


def test_demo_numbers_are_reproducible_from_the_seed(demo_run, tmp_path):
    out, cache = demo_run
    assert main(["demo", "--quick", "--cache-dir", str(cache), "--out", str(tmp_path), "--attributes", "sentiment"]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    first = json.loads((out / "results.json").read_text())
    assert again["attributes"]["sentiment"] == first["attributes"]["sentiment"]
    assert again["maps"] == first["maps"]


def test_demo_rejects_unknown_attributes(tmp_path, capsys):
    assert main(["demo", "--quick", "--attributes", "colour", "--out", str(tmp_path)]) == 1
    assert "unknown attributes ['colour']" in capsys.readouterr().err
