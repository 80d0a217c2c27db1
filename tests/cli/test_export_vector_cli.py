"""``lrt-jax export-vector --format gguf``: saved vectors in, one llama.cpp control vector out."""

import gguf
import jax.numpy as jnp
import numpy as np

from lrt_jax import steering
from lrt_jax.cli import main

D = 6


def save_tiny_vector(directory, layer, seed, model="tiny"):
    values = np.random.default_rng(seed).standard_normal(D).astype(np.float32)
    info = steering.VectorInfo(model=model, site=f"layers.{layer}.resid_post", d_model=D,
                               position_rule="answer_letter", estimator="diff_of_means")
    path = directory / f"layer{layer}.safetensors"
    steering.save_vector(steering.SteeringVector(jnp.asarray(values), info), path)
    return path, values


def test_export_vector_writes_one_gguf_for_vectors_at_several_layers(tmp_path, capsys):
    saved = [save_tiny_vector(tmp_path, layer, seed) for seed, layer in enumerate((4, 2))]
    out = tmp_path / "out" / "cv.gguf"

    assert main(["export-vector", *[str(p) for p, _ in saved], "--format", "gguf", "--out", str(out)]) == 0

    assert "2 control-vector layer(s)" in capsys.readouterr().out
    reader = gguf.GGUFReader(str(out))
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.model_hint"].contents() == "tiny"
    assert reader.fields["controlvector.layer_count"].contents() == 2
    loaded, hint = steering.load_gguf(out)
    assert list(loaded) == ["layers.2.resid_post", "layers.4.resid_post"]
    assert loaded["layers.4.resid_post"].tobytes() == saved[0][1].tobytes()
    assert loaded["layers.2.resid_post"].tobytes() == saved[1][1].tobytes()


def test_export_vector_model_hint_option(tmp_path):
    path, _ = save_tiny_vector(tmp_path, 1, 0)
    out = tmp_path / "cv.gguf"
    assert main(["export-vector", str(path), "--model-hint", "llama-3-8b", "--out", str(out)]) == 0
    assert steering.load_gguf(out)[1] == "llama-3-8b"


def test_export_vector_reports_a_vector_without_a_slot(tmp_path, capsys):
    path, _ = save_tiny_vector(tmp_path, 0, 0)
    assert main(["export-vector", str(path), "--out", str(tmp_path / "cv.gguf")]) == 1
    assert "block 0" in capsys.readouterr().err
    assert not (tmp_path / "cv.gguf").exists()
