"""SteeringVector as a pytree, its one-file save/load round trip, the checks on load, and the fit check."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from lrt_jax import mappers, steering

INFO = steering.VectorInfo(
    model="tiny-a",
    site="layers.1.resid_post",
    d_model=6,
    position_rule="answer_letter",
    estimator="diff_of_means",
    dataset="caa/test/refusal/test_dataset_ab.json",
    count=40,
)


def test_vector_is_a_pytree_with_static_metadata():
    vector = steering.SteeringVector(jnp.arange(6.0), INFO)
    doubled = jax.tree.map(lambda leaf: leaf * 2, vector)
    np.testing.assert_array_equal(doubled.vector, np.arange(6.0) * 2)
    assert doubled.metadata is INFO
    stacked = steering.SteeringVector(jnp.ones((3, 6)), INFO)
    np.testing.assert_array_equal(jax.vmap(lambda v: jnp.sum(v.vector))(stacked), [6.0, 6.0, 6.0])


def test_width_must_match_metadata():
    with pytest.raises(ValueError, match="d_model is 6"):
        steering.SteeringVector(jnp.ones(5), INFO)


def test_save_load_round_trip_keeps_array_and_nested_provenance(tmp_path):
    source = steering.SteeringVector(jnp.linspace(-1.0, 1.0, 6), INFO)
    transferred = steering.transfer_vector(
        source,
        (jnp.eye(6, 4), jnp.zeros(4)),
        mode="linear",
        target_model="tiny-b",
        target_site="layers.2.resid_post",
        map_info={"mapper": "explicit"},
    )
    path = tmp_path / "vectors" / "refusal.safetensors"
    steering.save_vector(transferred, path)
    loaded = steering.load_vector(path, site="layers.2.resid_post", d_model=4, model_name="tiny-b")
    np.testing.assert_array_equal(loaded.vector, transferred.vector)
    np.testing.assert_allclose(loaded.vector, np.linspace(-1.0, 1.0, 6)[:4], rtol=1e-6)
    assert loaded.metadata == transferred.metadata
    assert loaded.metadata.transferred_from == INFO


def test_one_file_readable_by_any_safetensors_reader_and_dtype_kept(tmp_path):
    values = np.linspace(-2.0, 2.0, 6).astype(ml_dtypes.bfloat16)
    path = steering.save_vector(steering.SteeringVector(jnp.asarray(values), INFO), tmp_path / "v.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.safetensors"]
    assert safetensors.numpy.load_file(str(path))["vector"].tobytes() == values.tobytes()
    loaded = steering.load_vector(path)
    assert loaded.vector.dtype == jnp.bfloat16 and loaded.metadata == INFO


def test_load_checks_site_width_and_model_naming_the_file(tmp_path):
    path = steering.save_vector(steering.SteeringVector(jnp.ones(6), INFO), tmp_path / "v.safetensors")
    with pytest.raises(steering.VectorMismatchError, match=r"v\.safetensors: .*site 'layers\.1\.resid_post', not "
                                                           r"'layers\.2\.resid_post'"):
        steering.load_vector(path, site="layers.2.resid_post")
    with pytest.raises(steering.VectorMismatchError, match=r"width 6, the site has width 8"):
        steering.load_vector(path, d_model=8)
    with pytest.raises(steering.VectorMismatchError, match=r"model 'tiny-a', not 'tiny-b'"):
        steering.load_vector(path, model_name="tiny-b")


def test_save_refuses_suffix_and_overwrite(tmp_path):
    vector = steering.SteeringVector(jnp.ones(6), INFO)
    with pytest.raises(ValueError, match=r"ending in \.safetensors"):
        steering.save_vector(vector, tmp_path / "v.npy")
    path = steering.save_vector(vector, tmp_path / "v.safetensors")
    with pytest.raises(FileExistsError, match=r"v\.safetensors exists; pass --overwrite"):
        steering.save_vector(steering.SteeringVector(jnp.zeros(6), INFO), path)
    np.testing.assert_array_equal(steering.load_vector(path).vector, np.ones(6))
    steering.save_vector(steering.SteeringVector(jnp.zeros(6), INFO), path, overwrite=True)
    np.testing.assert_array_equal(steering.load_vector(path).vector, np.zeros(6))


def test_old_two_file_format_corrupt_files_and_maps_are_refused_by_name(tmp_path):
    old = tmp_path / "old.safetensors"
    safetensors.numpy.save_file({"vector": np.ones(6, np.float32)}, str(old))
    old.with_suffix(".json").write_text(json.dumps({"format": "lrt_jax.steering_vector", "version": 1,
                                                    "info": INFO.to_dict()}))
    with pytest.raises(ValueError, match=r"old\.safetensors is a safetensors file without an lrt_jax\.artifact "
                                         r"header.*old\.json.*overwrite=True"):
        steering.load_vector(old)
    wide = steering.SteeringVector(jnp.ones(64), dataclasses.replace(INFO, d_model=64))
    path = steering.save_vector(wide, tmp_path / "v.safetensors")
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match=r"v\.safetensors is not a readable safetensors file.*truncated"):
        steering.load_vector(path)
    with pytest.raises(FileNotFoundError, match=r"none\.safetensors does not exist"):
        steering.load_vector(tmp_path / "none.safetensors")
    info = mappers.MapInfo("a", "b", "embed", "embed", 6, 2, "lstsq")
    map_path = mappers.save_map(mappers.AffineState(jnp.ones((6, 2)), jnp.zeros(2)), tmp_path / "m.safetensors", info)
    with pytest.raises(ValueError, match=r"m\.safetensors holds a 'map', not a 'steering_vector'.*load_map"):
        steering.load_vector(map_path)


def test_check_vector_fits_names_every_mismatch():
    vector = steering.SteeringVector(jnp.ones(6), INFO)
    steering.check_vector_fits(vector, site="layers.1.resid_post", d_model=6, model_name="tiny-a")
    with pytest.raises(steering.VectorMismatchError, match="layers.3.resid_post.*width 6.*transfer_vector"):
        steering.check_vector_fits(vector, site="layers.3.resid_post", d_model=8)
    with pytest.raises(steering.VectorMismatchError, match="model 'tiny-a'"):
        steering.check_vector_fits(vector, site="layers.1.resid_post", d_model=6, model_name="tiny-b")
