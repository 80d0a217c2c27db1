"""run_lrt_experiment → write_report on random-weight models: the results' structure, the report's files,
its R² heatmap matrix against a loop of scikit-learn ridge fits, and its numbers against the score tables."""

import json

import jax
import numpy as np
import pytest

from lrt_jax import lrt
from lrt_jax.organisms.corpus import CorpusConfig, generate_corpus
from lrt_jax.results import ResultsTable

from test_lrt_pipeline import _held_out_pairs, _sklearn_r2_matrix

TEXTS = [d.text for d in generate_corpus(CorpusConfig(n_documents=40, seed=5)) if d.kind == "attribute"][:20]
CONFIG = lrt.LRTConfig(source_layer=1, target_layers=(("big", 2),), attributes=("sentiment",), alphas=(0.0, 1.0, 2.0),
                       n_fit_texts=20, n_pairs=4, n_probe_prompts=5, ridge_alphas=(1.0,), n_random=2,
                       max_new_tokens=2)


@pytest.fixture(scope="module")
def report(random_pair, tmp_path_factory):
    source, target = random_pair
    with jax.numpy_rank_promotion("allow"):  # lrt_jax.mappers broadcasts [n, d] - [d]
        result = lrt.run_lrt_experiment(source, {"big": target}, TEXTS, CONFIG, progress=False)
    out = tmp_path_factory.mktemp("lrt_report")
    table = lrt.write_report(result, out)
    return result, out, table


def test_result_is_dataclasses_over_tidy_tables(report, random_pair):
    result, _, _ = report
    source, target = random_pair
    assert isinstance(result, lrt.LRTResult)
    assert result.source == source.name and dict(result.targets) == {"big": target.name}
    attribute = result.attributes["sentiment"]
    assert isinstance(attribute, lrt.AttributeResult)
    assert attribute.source_propensity().shape == (3, 5)
    steered = attribute.targets["big"]
    assert isinstance(steered, lrt.TargetSteering) and isinstance(steered.scores, ResultsTable)
    assert (steered.model, steered.site) == (target.name, "layers.2.resid_post")
    # 5 kinds (the 2 random controls averaged into one) × 3 α × 5 prompts × 2 metrics.
    assert len(steered.scores) == 5 * 3 * 5 * 2
    assert {r.vector for r in steered.scores.records} == set(lrt.VECTOR_KINDS)
    assert {r.metric for r in steered.scores.records} == {"propensity", "kl_next_token"}
    for kind in lrt.VECTOR_KINDS:
        assert steered.propensity(kind).shape == (3, 5) and steered.cost(kind).shape == (3,)
        np.testing.assert_allclose(steered.propensity(kind)[0], steered.propensity("native")[0], atol=1e-5)  # α = 0
    assert set(steered.cosine_with_native) == {"transferred_linear", "transferred_affine"}
    assert all(-1.0 <= c <= 1.0 for c in steered.cosine_with_native.values())
    assert result.maps["big"].r2.shape == (2, 3) and result.maps["big"].steering_pair == (1, 2)
    assert len(result.scores()) == len(steered.scores) + 3 * 5


def test_report_writes_every_file_and_the_r2_heatmap(report):
    _, out, table = report
    for name in ("results.json", "scores.json", "comparison.json", "report.md", "steering_sentiment.png"):
        assert (out / name).stat().st_size > 0
    heatmap = (out / "r2_layer_pairs.png").read_bytes()
    assert heatmap.startswith(b"\x89PNG") and len(heatmap) > 5_000
    report_md = (out / "report.md").read_text()
    assert "| sentiment | big |" in report_md and table in report_md
    assert "| source ↓ target → | 0 | 1 | 2 |" in report_md
    assert not list(out.glob("*.tmp*"))  # written atomically, nothing left behind


def test_report_r2_matrix_equals_a_loop_of_single_sklearn_ridge_fits(report, random_pair):
    _, out, _ = report
    source, target = random_pair
    written = np.asarray(json.loads((out / "results.json").read_text())["maps"]["big"]["r2"])
    paired, test = _held_out_pairs(source, target, TEXTS, seed=CONFIG.seed)
    np.testing.assert_allclose(written, _sklearn_r2_matrix(paired, test, alpha=CONFIG.ridge_alphas[0]), atol=1e-4)


def test_written_summary_and_comparisons_recompute_from_the_score_table(report):
    result, out, _ = report
    results = json.loads((out / "results.json").read_text())
    scores = ResultsTable.from_json(out / "scores.json").select(task="sentiment", model=result.targets["big"])
    (row,) = results["summary"]
    _, native = scores.propensity_matrix(vector="native", metric="propensity")
    _, linear = scores.propensity_matrix(vector="transferred_linear", metric="propensity")
    assert row["native_shift"] == pytest.approx(native[-1].mean() - native[0].mean(), abs=1e-6)
    expected = (linear[-1].mean() - linear[0].mean()) / (native[-1].mean() - native[0].mean())
    assert row["relative_shift"]["transferred_linear"] == pytest.approx(expected, rel=1e-4)
    assert row["pearson_linear"] == pytest.approx(np.corrcoef(native[-1], linear[-1])[0, 1], abs=1e-5)
    _, kl = scores.propensity_matrix(vector="native", metric="kl_next_token")
    assert row["kl"]["native"] == pytest.approx(kl[-1].mean(), rel=1e-5)
    comparison = ResultsTable.from_json(out / "comparison.json")
    assert {r.metric for r in comparison.records} == {"pearson", "mse", "slope"}
    mse = comparison.select(vector="transferred_linear", metric="mse").records
    np.testing.assert_allclose(sorted((r.alpha, r.value) for r in mse),
                               list(zip([0.0, 1.0, 2.0], ((native - linear) ** 2).mean(axis=1))), rtol=1e-4,
                               atol=1e-9)
    assert results["attributes"]["sentiment"]["targets"]["big"]["site"] == "layers.2.resid_post"
