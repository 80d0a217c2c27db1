"""llama.cpp control vectors: ours -> GGUF -> ours is bit-equal, and the file follows llama.cpp's convention.

The convention (checked here with gguf's own reader, independently of load_gguf):
general.architecture "controlvector", controlvector.model_hint, controlvector.layer_count,
float32 1-D tensors direction.{i}, with direction.{i} added to block i's output, i.e.
our layers.{i}.resid_post (same index; see lrt_jax/steering/_gguf.py for the source).
"""

import gguf
import jax.numpy as jnp
import numpy as np
import pytest

from lrt_jax import steering

D = 8


def vector_at(layer, seed=0, model="tiny-llama", d=D):
    values = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    info = steering.VectorInfo(model=model, site=f"layers.{layer}.resid_post", d_model=d,
                               position_rule="answer_letter", estimator="diff_of_means")
    return steering.SteeringVector(jnp.asarray(values), info)


def test_vectors_spanning_layers_round_trip_bit_equal(tmp_path):
    vectors = {layer: vector_at(layer, seed=layer) for layer in (5, 1, 12)}
    path = tmp_path / "cv.gguf"
    steering.save_gguf(path, vectors, "tiny-llama")

    loaded, hint = steering.load_gguf(path)

    assert hint == "tiny-llama"
    assert list(loaded) == ["layers.1.resid_post", "layers.5.resid_post", "layers.12.resid_post"]
    for layer, vector in vectors.items():
        got = loaded[f"layers.{layer}.resid_post"]
        assert got.dtype == np.float32
        assert got.tobytes() == np.asarray(vector.vector).tobytes()


def test_file_follows_llama_cpp_convention_read_by_gguf_reader(tmp_path):
    arrays = {3: np.arange(D, dtype=np.float32) - 2.5, 7: np.full(D, 0.25, np.float32)}
    path = tmp_path / "cv.gguf"
    # Keys may be sites or layer indices; both mean layers.{i}.resid_post.
    steering.save_gguf(path, {"layers.3.resid_post": arrays[3], 7: arrays[7]}, "org/model")

    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.model_hint"].contents() == "org/model"
    assert reader.fields["controlvector.layer_count"].contents() == 2
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.3", "direction.7"]
    for layer, values in arrays.items():
        tensor = tensors[f"direction.{layer}"]
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        assert list(tensor.shape) == [D]
        np.testing.assert_array_equal(np.asarray(tensor.data), values)


def test_iterable_of_vectors_uses_their_sites_and_model(tmp_path):
    path = tmp_path / "cv.gguf"
    steering.save_gguf(path, [vector_at(2, model="m"), vector_at(4, seed=1, model="m")])
    loaded, hint = steering.load_gguf(path)
    assert hint == "m" and list(loaded) == ["layers.2.resid_post", "layers.4.resid_post"]


@pytest.mark.parametrize("vectors, message", [
    ({"layers.3.resid_mid": np.ones(D, np.float32)}, "only 'layers.{i}.resid_post'"),
    ({"final_norm": np.ones(D, np.float32)}, "no llama.cpp control-vector slot"),
    ({0: np.ones(D, np.float32)}, "block 0"),
    ({1: np.ones(D, np.float32), 2: np.ones(D + 1, np.float32)}, "different widths"),
    ({1: np.array([1.0, np.nan] * (D // 2), np.float32)}, "non-finite"),
    ({1: np.array([1.0, np.inf] * (D // 2), np.float32)}, "non-finite"),
    ({1: np.ones((2, D), np.float32)}, "one \\[d_model\\] row"),
    ({1: np.ones(D, np.float32), "layers.1.resid_post": np.ones(D, np.float32)}, "two vectors"),
    ({}, "at least one layer"),
])
def test_bad_input_is_refused_with_a_clear_message(tmp_path, vectors, message):
    with pytest.raises(ValueError, match=message):
        steering.save_gguf(tmp_path / "cv.gguf", vectors, "m")
    assert not (tmp_path / "cv.gguf").exists()


def test_vector_keyed_at_another_layer_than_its_site_is_refused(tmp_path):
    with pytest.raises(ValueError, match="made for site 'layers.2.resid_post'"):
        steering.save_gguf(tmp_path / "cv.gguf", {3: vector_at(2)}, "m")


def test_model_hint_needed_when_vectors_name_several_models(tmp_path):
    with pytest.raises(ValueError, match="pass model_hint"):
        steering.save_gguf(tmp_path / "cv.gguf", [vector_at(1, model="a"), vector_at(2, model="b")])


def test_load_refuses_a_gguf_that_is_not_a_control_vector(tmp_path):
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((2, D), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="not 'controlvector'"):
        steering.load_gguf(path)


@pytest.mark.parametrize("name, array, message", [
    ("direction.0", np.ones(D, np.float32), "N >= 1"),
    ("direction.2", np.ones(D, np.float16), "float32 and 1-D"),
    ("direction.2", np.ones((2, D), np.float32), "float32 and 1-D"),
])
def test_load_refuses_tensors_llama_cpp_would_refuse(tmp_path, name, array, message):
    path = tmp_path / "cv.gguf"
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=message):
        steering.load_gguf(path)
