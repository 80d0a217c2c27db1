"""run_bench on random-weight stand-ins: scores against scikit-learn / NumPy refits of the saved rows,
closed-form cases (a model against itself), and the layer-pairing rules on hand-made matrices."""

import jax
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.neighbors import NearestNeighbors

import lrt_jax
from lrt_jax import mappers
from lrt_jax.lrt import BenchConfig, Solver, default_solvers, run_bench
from lrt_jax.lrt.bench import choose_layers, site_of
from lrt_jax.lrt.demo import held_out_texts

CONFIG = BenchConfig(layer_pairs=((0, 1), (1, 2)), attributes=("sentiment", "tense"), max_test_rows=96,
                     n_substitution_texts=4, n_pairs=6, n_probe_prompts=8, n_bootstrap=64, knn_k=5, seed=0)
GRID = (1e-2, 1.0, 100.0)
SOLVERS = (Solver("ridge(gcv)", mappers.ridge(alphas=list(GRID), select="gcv")),
           Solver("ridge(loo)", mappers.ridge(alphas=list(GRID), select="loo")),
           Solver("lstsq()", mappers.lstsq()))


@pytest.fixture(scope="module")
def dense_pair(organism_tokenizer):
    """A 2-layer d=32 and a 3-layer d=48 random llama with the organism tokenizer (dense: quick to compile)."""
    vocab = len(organism_tokenizer)
    models = []
    for seed, (width, layers) in enumerate(((32, 2), (48, 3))):
        config = lrt_jax.ModelConfig("llama", vocab, width, layers, 4, 2, width // 4, 64, max_position_embeddings=128)
        models.append(lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(seed)), organism_tokenizer,
                                 f"dense-{seed}"))
    return tuple(models)


@pytest.fixture(scope="module")
def bench(dense_pair):
    source, target = dense_pair
    return run_bench(source, target, held_out_texts(30, 0), CONFIG, solvers=SOLVERS, progress=False)


def _rows(result, solver, metric, pair, attribute=None):
    found = [row for row in result.rows if row.solver == solver and row.metric == metric
             and (row.source_site, row.target_site) == (site_of(pair[0]), site_of(pair[1]))
             and (attribute is None or row.attribute == attribute)]
    assert found, (solver, metric, pair)
    return found


def test_every_solver_pair_and_metric_has_a_row_with_an_interval(bench):
    metrics = {"r2", "cka", "cosine", "knn", "steering_preservation", "substitution_kl", "fit_seconds"}
    for solver in bench.solvers:
        for pair in CONFIG.layer_pairs:
            assert {row.metric for row in bench.rows if row.solver == solver
                    and row.source_site == site_of(pair[0]) and row.target_site == site_of(pair[1])} == metrics
            steering = _rows(bench, solver, "steering_preservation", pair)
            assert [row.attribute for row in steering] == ["sentiment", "tense", "all"]
            assert steering[-1].value == pytest.approx(np.mean([row.value for row in steering[:2]]), rel=1e-5)
    for row in bench.rows:
        if row.metric == "fit_seconds":
            assert row.value > 0 and row.ci_low is None
        else:
            assert row.ci_low <= row.value <= row.ci_high or np.isclose(row.ci_low, row.value) or np.isclose(
                row.value, row.ci_high), row


def test_geometric_scores_match_sklearn_refits_of_the_kept_rows(bench):
    acts = bench.activations
    for source_layer, target_layer in CONFIG.layer_pairs:
        x_train, x_test = acts[f"source/{site_of(source_layer)}/train"], acts[f"source/{site_of(source_layer)}/test"]
        y_train, y_test = acts[f"target/{site_of(target_layer)}/train"], acts[f"target/{site_of(target_layer)}/test"]
        assert x_test.shape[0] == y_test.shape[0] == CONFIG.max_test_rows
        pair = (source_layer, target_layer)
        for solver in ("ridge(gcv)", "ridge(loo)"):
            row = _rows(bench, solver, "r2", pair)[0]
            assert row.alpha in GRID
            model = Ridge(alpha=row.alpha).fit(x_train.astype(np.float64), y_train.astype(np.float64))
            y_hat = model.predict(x_test.astype(np.float64))
            assert row.value == pytest.approx(r2_score(y_test, y_hat, multioutput="variance_weighted"), abs=2e-4)
        y_hat = np.c_[x_test, np.ones(len(x_test))] @ np.linalg.lstsq(
            np.c_[x_train, np.ones(len(x_train))].astype(np.float64), y_train.astype(np.float64), rcond=None)[0]
        assert _rows(bench, "lstsq()", "r2", pair)[0].value == pytest.approx(
            r2_score(y_test, y_hat, multioutput="variance_weighted"), abs=2e-3)
        centred_hat, centred = y_hat - y_hat.mean(0), y_test - y_test.mean(0)
        cka = np.linalg.norm(centred.T @ centred_hat) ** 2 / (
            np.linalg.norm(centred_hat.T @ centred_hat) * np.linalg.norm(centred.T @ centred))
        assert _rows(bench, "lstsq()", "cka", pair)[0].value == pytest.approx(cka, abs=2e-3)
        cosine = np.mean(np.sum(y_hat * y_test, 1) / (np.linalg.norm(y_hat, axis=1) * np.linalg.norm(y_test, axis=1)))
        assert _rows(bench, "lstsq()", "cosine", pair)[0].value == pytest.approx(cosine, abs=2e-3)

        def neighbours(features):
            found = NearestNeighbors(n_neighbors=CONFIG.knn_k + 1, metric="cosine").fit(features).kneighbors(
                features, return_distance=False)
            return [set(row[row != i][:CONFIG.knn_k]) for i, row in enumerate(found)]

        ridge_row = _rows(bench, "ridge(gcv)", "knn", pair)[0]
        ridge_hat = Ridge(alpha=ridge_row.alpha).fit(x_train.astype(np.float64), y_train).predict(x_test)
        knn = np.mean([len(a & b) / CONFIG.knn_k for a, b in zip(neighbours(ridge_hat), neighbours(y_test))])
        assert ridge_row.value == pytest.approx(knn, abs=0.03)  # a near-tie can swap one neighbour


def test_loo_alpha_is_sklearn_ridgecv_alpha(bench):
    from sklearn.linear_model import RidgeCV

    acts = bench.activations
    x, y = acts[f"source/{site_of(1)}/train"].astype(np.float64), acts[f"target/{site_of(2)}/train"]
    assert _rows(bench, "ridge(loo)", "r2", (1, 2))[0].alpha == pytest.approx(
        RidgeCV(alphas=GRID).fit(x, y.astype(np.float64)).alpha_)


def test_a_model_against_itself_preserves_steering_exactly_and_substitutes_without_kl(dense_pair):
    source, _ = dense_pair
    config = BenchConfig(layer_pairs=((1, 1),), attributes=("sentiment",), max_test_rows=64, n_substitution_texts=3,
                         n_pairs=6, n_probe_prompts=8, n_bootstrap=32, knn_k=5)
    result = run_bench(source, source, held_out_texts(20, 1), config, solvers=(Solver("lstsq()", mappers.lstsq()),),
                       progress=False)
    value = {row.metric: row.value for row in result.rows if row.attribute in (None, "all")}
    assert value["r2"] == pytest.approx(1.0, abs=1e-4)
    assert value["steering_preservation"] == pytest.approx(1.0, abs=1e-3)
    assert value["substitution_kl"] == pytest.approx(0.0, abs=1e-5)
    assert value["knn"] == pytest.approx(1.0)


def test_choose_layers_compares_rules_on_hand_made_matrices():
    r2 = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.95]])
    cka = np.array([[0.1, 0.9, 0.2], [0.3, 0.2, 0.9]])
    steering = np.array([[1.0, 0.4, 0.2], [0.1, 0.3, 0.9]])
    choice = choose_layers(r2, cka, steering)
    assert list(choice.choices["argmax_r2"]) == [0, 2]
    assert list(choice.choices["argmax_cka"]) == [1, 2]
    assert list(choice.choices["argmax_steering"]) == [0, 2]
    assert choice.reached["argmax_r2"] == pytest.approx((1.0 + 0.9) / 2)
    assert choice.reached["argmax_cka"] == pytest.approx((0.4 + 0.9) / 2)
    assert choice.best_rule in ("argmax_r2", "relative_depth") and choice.reached[choice.best_rule] == pytest.approx(0.95)
    from scipy.stats import spearmanr

    assert choice.spearman["r2"] == pytest.approx(spearmanr(r2.ravel(), steering.ravel()).statistic)
    assert choice.auto_pair == (1, 2)


def test_default_solvers_are_at_least_eight_distinct_factories_that_fit_under_vmap():
    solvers = default_solvers(16, 24, BenchConfig(gradient_steps=5))
    assert len(solvers) >= 8 and len({s.name for s in solvers}) == len(solvers)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 80, 16)).astype(np.float32)
    y = (x @ rng.normal(size=(16, 24))).astype(np.float32)
    for solver in solvers:
        states = jax.vmap(solver.mapper.fit)(x, y)
        assert jax.vmap(solver.mapper.apply)(states, x).shape == (2, 80, 24), solver.name


def test_run_bench_refuses_layer_pairs_outside_the_models(dense_pair):
    source, target = dense_pair
    with pytest.raises(ValueError, match="inside the 2 source × 3 target layers"):
        run_bench(source, target, ["a"], BenchConfig(layer_pairs=((0, 5),)), progress=False)
