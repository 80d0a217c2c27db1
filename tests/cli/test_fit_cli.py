"""``lrt-jax capture`` → ``fit`` → ``transfer --map`` end to end on two tiny random HF models.

References: the saved ridge map against scikit-learn's ``Ridge`` at the chosen α (and
that α against a NumPy GCV over the same grid), the lstsq map against
``np.linalg.lstsq``, the reported R² against ``1 − SSE/SST`` by hand, Procrustes
against ``WᵀW = I``, reduced rank against ``np.linalg.matrix_rank``, and the
transferred vector against ``v @ W + b`` computed from the saved tensors in NumPy.
"""

from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from sklearn.linear_model import Ridge

import hf_models
from lrt_jax import mappers, steering
from lrt_jax.cli import main
from lrt_jax.cli.fit import RIDGE_ALPHAS

SOURCE_SITE, TARGET_SITE = "layers.0.resid_post", "layers.1.resid_post"
N_PROMPTS, HOLDOUT = 96, 0.25
N_FIT = 72


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """Source (width 64) and target (width 32) checkpoints and their captures on the same prompts."""
    root = tmp_path_factory.mktemp("fit_cli")
    source = hf_models.save_tiny_hf_model("llama", root / "source", with_tokenizer=True)
    target = hf_models.save_tiny_hf_model("llama", root / "target", with_tokenizer=True, seed=1, hidden_size=32,
                                          intermediate_size=48)
    rng = np.random.default_rng(0)
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(" ".join(f"w{i}" for i in rng.integers(0, 150, rng.integers(3, 9)))
                                 for _ in range(N_PROMPTS)) + "\n")
    for name, model, sites in (("source", source, f"{SOURCE_SITE},final_norm"), ("target", target, TARGET_SITE)):
        assert main(["capture", "--model", str(model), "--prompts", str(prompts), "--sites", sites,
                     "--batch-size", "32", "--out", str(root / f"capture_{name}")]) == 0
    x = safetensors.numpy.load_file(str(root / "capture_source" / "activations.safetensors"))[SOURCE_SITE]
    y = safetensors.numpy.load_file(str(root / "capture_target" / "activations.safetensors"))[TARGET_SITE]
    return dict(root=root, source=source, target=target, x=x.astype(np.float64), y=y.astype(np.float64))


def fit(captured, out, *extra, source="capture_source", target="capture_target"):
    root = captured["root"]
    return main(["fit", "--source", str(root / source), "--target", str(root / target), "--source-site",
                 SOURCE_SITE, "--holdout", str(HOLDOUT), "--out", str(out), *extra])


def numpy_gcv(x, y, alpha):
    """Golub–Heath–Wahba GCV of ridge with an unpenalised intercept, in float64."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    weight = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    rss = np.sum((yc - xc @ weight) ** 2, axis=0)
    eigenvalues = np.linalg.eigvalsh(xc.T @ xc)
    trace = 1 + np.sum(eigenvalues / (eigenvalues + alpha))
    return np.mean((rss / len(x)) / (1 - trace / len(x)) ** 2)


def test_fit_saves_the_ridge_map_of_the_captured_arrays(captured, tmp_path, capsys):
    out = tmp_path / "fit"
    assert fit(captured, out) == 0
    assert "held-out R²" in capsys.readouterr().out
    loaded = mappers.load_map(out / "map.safetensors", source_site=SOURCE_SITE, target_site=TARGET_SITE,
                              source_width=64, target_width=32, source_model=str(captured["source"]),
                              target_model=str(captured["target"]))
    assert type(loaded.state) is mappers.RidgeState and loaded.info.n_fit == N_FIT
    x, y = captured["x"][:N_FIT], captured["y"][:N_FIT]
    alpha = loaded.info.hyperparameters["alpha"]
    scores = [numpy_gcv(x, y, a) for a in RIDGE_ALPHAS]
    assert numpy_gcv(x, y, alpha) <= min(scores) * (1 + 1e-3)

    reference = Ridge(alpha=alpha).fit(x, y)
    tensors = {k: v.astype(np.float64) for k, v in safetensors.numpy.load_file(str(out / "map.safetensors")).items()}
    error = np.linalg.norm(tensors["weight"] - reference.coef_.T) / np.linalg.norm(reference.coef_)
    assert error < 2e-3
    np.testing.assert_allclose(tensors["bias"], reference.intercept_, atol=2e-3 * np.abs(reference.intercept_).max())

    report = json.loads((out / "fit.json").read_text())
    x_test, y_test = captured["x"][N_FIT:], captured["y"][N_FIT:]
    prediction = x_test @ tensors["weight"] + tensors["bias"]
    r2 = 1 - np.sum((y_test - prediction) ** 2) / np.sum((y_test - y_test.mean(0)) ** 2)
    assert report["heldout_r2"] == pytest.approx(r2, abs=1e-4) and report["n_heldout"] == N_PROMPTS - N_FIT
    assert report["solver"] == "ridge" and report["source_width"] == 64
    assert sorted(json.loads((out / "manifest.json").read_text())["files"]) == ["fit.json", "map.safetensors"]


def test_fit_lstsq_equals_numpy_lstsq_and_other_solvers_have_their_shape(captured, tmp_path):
    assert fit(captured, tmp_path / "lstsq", "--solver", "lstsq", "--holdout", "0") == 0
    tensors = safetensors.numpy.load_file(str(tmp_path / "lstsq" / "map.safetensors"))
    x, y = captured["x"], captured["y"]
    solution = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)[0]
    prediction = x @ tensors["weight"].astype(np.float64) + tensors["bias"]
    np.testing.assert_allclose(prediction, np.hstack([x, np.ones((len(x), 1))]) @ solution,
                               atol=1e-3 * np.abs(y).max())
    assert json.loads((tmp_path / "lstsq" / "fit.json").read_text())["heldout_r2"] is None

    assert fit(captured, tmp_path / "procrustes", "--solver", "procrustes") == 0
    weight = np.asarray(mappers.linear(mappers.load_map(tmp_path / "procrustes")), np.float64)
    np.testing.assert_allclose(weight.T @ weight, np.eye(32), atol=1e-4)
    assert fit(captured, tmp_path / "rrr", "--solver", "reduced_rank", "--rank", "3") == 0
    loaded = mappers.load_map(tmp_path / "rrr")
    assert np.linalg.matrix_rank(np.asarray(mappers.linear(loaded), np.float64), tol=1e-4) == 3
    assert loaded.info.hyperparameters == {"rank": 3, "alpha": 0.0}
    assert fit(captured, tmp_path / "cca", "--solver", "cca", "--rank", "2") == 0
    assert type(mappers.load_map(tmp_path / "cca").state) is mappers.CCAState


def test_transfer_map_applies_the_saved_map_without_refitting(captured, tmp_path, capsys):
    assert fit(captured, tmp_path / "fit") == 0
    values = np.random.default_rng(1).standard_normal(64).astype(np.float32)
    info = steering.VectorInfo(model=str(captured["source"]), site=SOURCE_SITE, d_model=64,
                               position_rule="last_token", estimator="diff_of_means")
    vector = steering.save_vector(steering.SteeringVector(jnp.asarray(values), info), tmp_path / "v.safetensors")
    out = tmp_path / "transfer"
    assert main(["transfer", "--map", str(tmp_path / "fit"), "--vector", str(vector), "--mode", "affine",
                 "--target", str(captured["target"]), "--target-site", TARGET_SITE, "--out", str(out)]) == 0
    assert "held-out R²" in capsys.readouterr().out

    tensors = safetensors.numpy.load_file(str(tmp_path / "fit" / "map.safetensors"))
    expected = values.astype(np.float64) @ tensors["weight"].astype(np.float64) + tensors["bias"]
    transferred = steering.load_vector(out / "transferred.safetensors", site=TARGET_SITE, d_model=32,
                                       model_name=str(captured["target"]))
    np.testing.assert_allclose(transferred.vector, expected, rtol=1e-5, atol=1e-5)
    assert transferred.metadata.transferred_from == info and transferred.metadata.transfer_mode == "affine"
    assert dict(transferred.metadata.map_info)["solver"] == "ridge"
    np.testing.assert_array_equal(steering.load_vector(out / "unmapped.safetensors").vector, values[:32])
    random = steering.load_vector(out / "random.safetensors").vector
    assert np.linalg.norm(random) == pytest.approx(np.linalg.norm(expected), rel=1e-5)
    summary = json.loads((out / "transfer.json").read_text())
    assert summary["map"] == str(tmp_path / "fit" / "map.safetensors") and summary["n_fit"] == N_FIT
    assert not (out / "map.safetensors").exists()


def test_transfer_map_refuses_a_vector_or_target_the_map_was_not_fitted_for(captured, tmp_path, capsys):
    assert fit(captured, tmp_path / "fit") == 0
    info = steering.VectorInfo(model="m", site="final_norm", d_model=64, position_rule="last_token", estimator="x")
    vector = steering.save_vector(steering.SteeringVector(jnp.ones(64), info), tmp_path / "v.safetensors")
    argv = ["transfer", "--map", str(tmp_path / "fit" / "map.safetensors"), "--vector", str(vector)]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 1
    assert "its source_site is 'layers.0.resid_post', not 'final_norm'" in capsys.readouterr().err
    good = steering.SteeringVector(jnp.ones(64), steering.VectorInfo("m", SOURCE_SITE, 64, "last_token", "x"))
    steering.save_vector(good, vector, overwrite=True)
    assert main([*argv, "--target-site", "layers.0.resid_post", "--out", str(tmp_path / "b")]) == 1
    assert "its target_site is 'layers.1.resid_post', not 'layers.0.resid_post'" in capsys.readouterr().err
    assert main([*argv, "--target", str(captured["source"]), "--out", str(tmp_path / "c")]) == 1
    assert "its target_model is" in capsys.readouterr().err
    native = steering.SteeringVector(jnp.ones(64), steering.VectorInfo("m", TARGET_SITE, 64, "last_token", "x"))
    steering.save_vector(native, tmp_path / "native.safetensors")
    assert main([*argv, "--native", str(tmp_path / "native.safetensors"), "--out", str(tmp_path / "d")]) == 1
    assert "it has width 64, the site has width 32" in capsys.readouterr().err
    assert main(["transfer", "--vector", str(vector), "--target", "t", "--out", str(tmp_path / "e")]) == 1
    assert "needs --source, --prompts, --source-site, --target-site" in capsys.readouterr().err
    assert main([*argv, "--prompts", "p.txt", "--out", str(tmp_path / "f")]) == 1
    assert "--prompts (read to fit one) would be ignored" in capsys.readouterr().err


def test_fit_refuses_unpaired_or_unusable_captures(captured, tmp_path, capsys):
    root = captured["root"]
    assert fit(captured, tmp_path / "a", source="capture_target") == 1
    assert f"--source-site {SOURCE_SITE}: " in capsys.readouterr().err
    assert main(["fit", "--source", str(root / "capture_source"), "--target", str(root / "capture_target"),
                 "--out", str(tmp_path / "b")]) == 1
    assert "holds sites ['layers.0.resid_post', 'final_norm']; choose one with --source-site" in capsys.readouterr().err
    assert fit(captured, tmp_path / "c", "--solver", "reduced_rank") == 1
    assert "needs --rank" in capsys.readouterr().err
    assert main(["fit", "--source", str(tmp_path / "nothing"), "--target", str(root / "capture_target"),
                 "--out", str(tmp_path / "d")]) == 1
    assert "activations.json is missing" in capsys.readouterr().err

    short = tmp_path / "short"
    shutil.copytree(root / "capture_target", short)
    safetensors.numpy.save_file({TARGET_SITE: np.ones((5, 32), np.float32)}, str(short / "activations.safetensors"))
    assert fit(captured, tmp_path / "e", target=short) == 1
    assert f"source capture has {N_PROMPTS} rows and the target capture 5" in capsys.readouterr().err
    record = json.loads((short / "activations.json").read_text())
    (short / "activations.json").write_text(json.dumps({**record, "reduce": "none"}))
    assert fit(captured, tmp_path / "f", target=short) == 1
    assert "captured with --reduce none" in capsys.readouterr().err
    other = tmp_path / "other_prompts.txt"
    other.write_text("w1 w2\n" * N_PROMPTS)
    shutil.copytree(root / "capture_target", tmp_path / "other")
    (tmp_path / "other" / "activations.json").write_text(json.dumps({**record, "prompts_file": str(other)}))
    assert fit(captured, tmp_path / "g", target=tmp_path / "other") == 1
    assert "the captures read different prompts" in capsys.readouterr().err

    assert fit(captured, tmp_path / "h") == 0
    assert fit(captured, tmp_path / "h") == 1
    assert "already holds results" in capsys.readouterr().err
    assert fit(captured, tmp_path / "h", "--overwrite", "--solver", "lstsq") == 0
    assert mappers.load_map(tmp_path / "h").info.solver == "lstsq"
