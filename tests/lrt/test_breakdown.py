"""The zoo breakdown's scores and intervals, against SciPy and a NumPy loop over the same resamples."""

import json

import jax
import numpy as np
import pytest
from scipy import stats

from lrt_jax import evaluation
from lrt_jax.lrt import LRTConfig, LRTResult, VECTOR_KINDS
from lrt_jax.lrt.breakdown import METRICS, ZOO, breakdown_rows, transfer_scores, write_breakdown
from lrt_jax.lrt.maps import LayerMaps
from lrt_jax.lrt.results import AttributeResult

ALPHAS = [0.0, 1.0, 2.0]
N_PROMPTS = 12


def _propensities(rng):
    """Per kind ``[n_alphas, n_prompts]``: shifts grow with α; transferred vectors keep part of native's."""
    base = rng.normal(size=N_PROMPTS)
    gain = 1.0 + 0.3 * rng.normal(size=N_PROMPTS)
    scale = {"native": 1.0, "transferred_linear": 0.8, "transferred_affine": 0.9, "random": 0.05, "unmapped": 0.2}
    return {kind: np.stack([base + s * a * gain + (0.2 * a * rng.normal(size=N_PROMPTS) if kind != "native" else 0)
                            for a in ALPHAS]).astype(np.float32)
            for kind, s in scale.items()}


@pytest.fixture
def zoo_result(hand_made_target):
    rng = np.random.default_rng(3)
    attributes = {}
    raw = {}
    for attribute in ("sentiment", "topic"):
        raw[attribute] = _propensities(rng)
        attributes[attribute] = AttributeResult("a", "b", "src", "layers.0.resid_post", None,
                                                {"m": hand_made_target(raw[attribute], ALPHAS)})
    maps = {"m": LayerMaps(np.array([[0.5, 0.7]]), np.zeros((1, 2)), (0, 1), None)}
    config = LRTConfig(source_layer=0, target_layers=(("m", 1),), attributes=tuple(attributes), alphas=tuple(ALPHAS))
    return LRTResult(config=config, source="src", targets={"m": "m"}, maps=maps, attributes=attributes), raw


def _numpy_scores(raw, kind, at, idx=slice(None)):
    """``{metric: [per attribute..., mean]}`` by hand: shift ratio and scipy Pearson."""
    out = {metric: [] for metric in METRICS}
    for attribute in raw:
        native, values = raw[attribute]["native"][:, idx], raw[attribute][kind][:, idx]
        native_shift, shift = native[at] - native[0], values[at] - values[0]
        out["preservation"].append(shift.mean() / native_shift.mean())
        out["prompt_pearson"].append(stats.pearsonr(values[at], native[at])[0])
        out["shift_pearson"].append(stats.pearsonr(shift, native_shift)[0])
    return {metric: [*values, np.mean(values)] for metric, values in out.items()}


def test_scores_equal_scipy_and_intervals_equal_a_loop_over_the_resamples(zoo_result):
    result, raw = zoo_result
    rows = breakdown_rows(result, {"m": "seed"}, alpha=2.0, n_resamples=200, seed=5)
    # the resamples the function draws for its first target (documented: fold_in(key(seed), target index))
    indices = np.asarray(evaluation.bootstrap_indices(jax.random.fold_in(jax.random.key(5), 0), N_PROMPTS, 200))
    for kind in VECTOR_KINDS[1:]:
        expected = _numpy_scores(raw, kind, at=2)
        draws = [_numpy_scores(raw, kind, 2, idx) for idx in indices]
        for metric in METRICS:
            for a, attribute in enumerate(["sentiment", "topic", "all"]):
                (row,) = [r for r in rows if (r.vector, r.metric, r.attribute) == (kind, metric, attribute)]
                assert row.factor == "seed" and row.target == "m"
                np.testing.assert_allclose(row.value, expected[metric][a], rtol=1e-4, atol=1e-5)
                samples = np.array([d[metric][a] for d in draws])
                np.testing.assert_allclose([row.ci_low, row.ci_high], np.quantile(samples, [0.025, 0.975]),
                                           rtol=1e-3, atol=1e-4)
                assert row.ci_low <= row.value <= row.ci_high or metric != "preservation"
    (r2,) = [r for r in rows if r.metric == "r2"]
    assert r2.value == pytest.approx(0.7) and r2.ci_low is None
    shifts = {r.attribute: r for r in rows if (r.vector, r.metric) == ("native", "shift")}
    by_hand = [raw[a]["native"][2] - raw[a]["native"][0] for a in ("sentiment", "topic")]
    for a, attribute in enumerate(["sentiment", "topic"]):
        assert shifts[attribute].value == pytest.approx(by_hand[a].mean(), rel=1e-5)
        resampled = [by_hand[a][idx].mean() for idx in indices]
        np.testing.assert_allclose([shifts[attribute].ci_low, shifts[attribute].ci_high],
                                   np.quantile(resampled, [0.025, 0.975]), rtol=1e-4)
    assert shifts["all"].value == pytest.approx(np.mean([h.mean() for h in by_hand]), rel=1e-5)


def test_the_controls_preserve_little_and_the_transferred_vectors_most(zoo_result):
    result, _ = zoo_result
    rows = {(r.vector, r.metric): r for r in breakdown_rows(result, {"m": "seed"}, alpha=1.0, n_resamples=100)
            if r.attribute == "all"}
    assert rows["transferred_affine", "preservation"].value == pytest.approx(0.9, abs=0.15)
    assert rows["random", "preservation"].ci_high < 0.4 < rows["transferred_linear", "preservation"].ci_low


def test_transfer_scores_compose_under_jit_and_vmap():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(3, 10, 2)).astype(np.float32) for _ in range(4)]
    eager = np.stack([np.asarray(transfer_scores(*(a[i] for a in arrays))) for i in range(3)])
    np.testing.assert_allclose(jax.jit(jax.vmap(transfer_scores))(*arrays), eager, rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_named(zoo_result):
    result, _ = zoo_result
    with pytest.raises(ValueError, match=r"α = 0.5 is not one of"):
        breakdown_rows(result, {"m": "seed"}, alpha=0.5)
    with pytest.raises(ValueError, match=r"no factor is named for targets \['m'\]"):
        breakdown_rows(result, {}, alpha=1.0)


def test_written_table_json_and_plot(zoo_result, tmp_path):
    result, raw = zoo_result
    rows = breakdown_rows(result, {"m": "seed"}, alpha=2.0, n_resamples=50)
    table = write_breakdown(rows, tmp_path, alpha=2.0, extra={"source": "src"})
    assert table.count("\n| seed | `m` | 0.70 |") == 1
    expected_shift = np.mean([np.mean(raw[a]["native"][2] - raw[a]["native"][0]) for a in raw])
    assert f"| 0.70 | {expected_shift:.2f} [" in table
    assert "\n| factor | sentiment | topic |" in table and table.count("\n| seed | ") == 2
    saved = json.loads((tmp_path / "breakdown.json").read_text())
    assert saved["alpha"] == 2.0 and saved["source"] == "src" and len(saved["rows"]) == len(rows)
    assert (tmp_path / "breakdown.csv").read_text().splitlines()[0].startswith("factor,target,attribute")
    assert (tmp_path / "breakdown.png").stat().st_size > 10_000


@pytest.mark.slow
def test_experiment_script_runs_on_tiny_organisms(tmp_path):
    """``experiments/lrt_breakdown.py --tiny`` end to end: trains two tiny organisms, writes every file."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "experiments" / "lrt_breakdown.py"
    environment = {**os.environ, "LRT_JAX_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, str(script), "--tiny", "--targets", "large-seed1,large-bpe", "--resamples", "50",
                    "--out", str(tmp_path / "out")], check=True, capture_output=True, text=True, env=environment)
    saved = json.loads((tmp_path / "out" / "breakdown.json").read_text())
    assert {row["target"] for row in saved["rows"]} == {"tiny-large-seed1", "tiny-large-bpe"}
    assert saved["organism_seconds"]["tiny-small"]["trained"] is True
    assert (tmp_path / "out" / "lrt" / "report.md").exists() and (tmp_path / "out" / "breakdown.png").exists()


def test_each_zoo_recipe_differs_from_large_in_its_factor_only():
    import dataclasses

    from lrt_jax.organisms import get_recipe

    large = dataclasses.asdict(get_recipe("large"))
    seed1, xlarge = dataclasses.asdict(get_recipe("large-seed1")), dataclasses.asdict(get_recipe("xlarge"))
    assert {k for k in large if large[k] != seed1[k]} == {"name", "training"}
    assert {k for k, v in large["training"].items() if seed1["training"][k] != v} == {"seed"}
    changed = {k for k, v in large["model"].items() if xlarge["model"][k] != v}
    assert changed == {"d_model", "d_ff", "head_dim"} and xlarge["model"]["d_model"] == 4 * 64
    assert xlarge["corpus"] == large["corpus"]
    shifted = dataclasses.asdict(get_recipe("large-shifted"))
    assert {k for k in large if large[k] != shifted[k]} == {"name", "corpus", "tokenizer_corpus"}
    assert shifted["tokenizer_corpus"] == large["corpus"]
    assert {k for k, v in large["corpus"].items() if shifted["corpus"][k] != v} == {"seed", "copula_fraction",
                                                                                    "value_weights"}
    bpe = dataclasses.asdict(get_recipe("large-bpe"))
    assert {k for k in large if large[k] != bpe[k]} == {"name", "model", "tokenizer", "training"}
    # The same documents are longer in BPE tokens, so the rows are longer; nothing else of training changes.
    assert {k for k, v in large["training"].items() if bpe["training"][k] != v} == {"sequence_length"}
    assert {k for k, v in large["model"].items() if bpe["model"][k] != v} == {"vocab_size"}
    assert bpe["tokenizer"] == {"kind": "bpe", "vocab_size": bpe["model"]["vocab_size"]}
    assert {factor.target for factor in ZOO} == {"large", "large-seed1", "moe", "gemma2", "xlarge", "large-shifted",
                                                 "large-bpe"}
