"""``lrt-jax bench --quick`` end to end on tiny organisms: the output contract, and scores recomputed
from the saved activations with scikit-learn."""

import csv
import json

import numpy as np
import pytest
from safetensors.numpy import load_file
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from lrt_jax.cli import main
from lrt_jax.cli.bench import parse_layer_pairs

FIELDS = {"solver", "alpha", "source_site", "target_site", "metric", "value", "ci_low", "ci_high", "attribute"}
METRICS = {"r2", "cka", "cosine", "knn", "steering_preservation", "substitution_kl", "fit_seconds"}
PAIRS = [("layers.1.resid_post", "layers.2.resid_post"), ("layers.0.resid_post", "layers.1.resid_post")]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("organisms")
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--cache-dir", str(cache), "--out", str(out), "--save-activations",
                 "--attributes", "sentiment", "--layer-pairs", "1:2,0:1", "--n-bootstrap", "50"]) == 0
    return out, cache


def test_bench_writes_the_leaderboard_contract(bench_run):
    out, _ = bench_run
    for name in ("leaderboard.json", "leaderboard.csv", "leaderboard.md", "bench.json", "activations.safetensors",
                 "manifest.json"):
        assert (out / name).is_file(), name
    for name in ("solver_scores.png", "r2_vs_steering.png", "layer_pairs.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    rows = json.loads((out / "leaderboard.json").read_text())
    assert all(set(row) == FIELDS for row in rows)
    assert {row["metric"] for row in rows} == METRICS
    solvers = {row["solver"] for row in rows}
    assert len(solvers) >= 8 and "ridge(alphas=(0.01, 0.1, 1, 10, 100, 1000, 10000), select='gcv')" in solvers
    assert {(row["source_site"], row["target_site"]) for row in rows} == set(PAIRS)
    for row in rows:
        if row["metric"] == "fit_seconds":
            assert row["ci_low"] is None and row["value"] > 0
        else:
            assert row["ci_low"] <= row["ci_high"]
        assert (row["attribute"] is not None) == (row["metric"] == "steering_preservation")
    with open(out / "leaderboard.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) and set(table[0]) == FIELDS
    assert float(table[0]["value"]) == pytest.approx(rows[0]["value"])
    summary = json.loads((out / "bench.json").read_text())
    choice = summary["layer_choice"]
    assert np.asarray(choice["r2"]).shape == (2, 3)  # tiny-small 2 layers × tiny-large 3 layers
    assert set(choice["choices"]) == {"relative_depth", "argmax_r2", "argmax_cka", "argmax_steering"}
    assert choice["choices"]["argmax_r2"] == list(np.argmax(np.asarray(choice["r2"]), axis=1))
    assert "## Layer choice" in (out / "leaderboard.md").read_text()


def test_ridge_r2_recomputed_with_sklearn_from_the_saved_activations(bench_run):
    out, _ = bench_run
    rows = json.loads((out / "leaderboard.json").read_text())
    acts = load_file(str(out / "activations.safetensors"))
    assert set(acts) == {f"{role}/layers.{layer}.resid_post/{split}" for role, layers in (("source", 2), ("target", 3))
                         for layer in range(layers) for split in ("train", "test")}
    for source_site, target_site in PAIRS:
        row = next(r for r in rows if r["metric"] == "r2" and r["solver"].startswith("ridge(") and "'gcv'" in r["solver"]
                   and (r["source_site"], r["target_site"]) == (source_site, target_site))
        x_train, x_test = acts[f"source/{source_site}/train"], acts[f"source/{source_site}/test"]
        y_train, y_test = acts[f"target/{target_site}/train"], acts[f"target/{target_site}/test"]
        y_hat = Ridge(alpha=row["alpha"]).fit(x_train.astype(np.float64), y_train.astype(np.float64)).predict(x_test)
        assert row["value"] == pytest.approx(r2_score(y_test, y_hat, multioutput="variance_weighted"), abs=2e-4)
        # The layer-choice heatmap scores the same ridge on the same rows.
        choice = json.loads((out / "bench.json").read_text())["layer_choice"]
        i, j = int(source_site.split(".")[1]), int(target_site.split(".")[1])
        assert choice["r2"][i][j] == pytest.approx(row["value"], abs=1e-4)


def test_bench_refuses_a_used_out_directory(bench_run, capsys):
    out, cache = bench_run
    assert main(["bench", "--quick", "--cache-dir", str(cache), "--out", str(out)]) == 1
    assert "already holds results" in capsys.readouterr().err


def test_bench_rejects_bad_layer_pairs_and_unknown_models(tmp_path, capsys):
    assert parse_layer_pairs("all") is None and parse_layer_pairs("0:1, 2:3") == ((0, 1), (2, 3))
    with pytest.raises(ValueError, match="source:target pairs"):
        parse_layer_pairs("0-1")
    assert main(["bench", "--source", "nonexistent", "--out", str(tmp_path / "x")]) == 1
    assert "neither a checkpoint directory nor an organism" in capsys.readouterr().err
