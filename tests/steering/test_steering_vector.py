"""SteeringVector as a pytree, its save/load round trip, and the fit check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrt_jax import steering

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
    steering.save_vector(path, transferred)
    loaded = steering.load_vector(path)
    np.testing.assert_array_equal(loaded.vector, transferred.vector)
    np.testing.assert_allclose(loaded.vector, np.linspace(-1.0, 1.0, 6)[:4], rtol=1e-6)
    assert loaded.metadata == transferred.metadata
    assert loaded.metadata.transferred_from == INFO


def test_load_requires_metadata_and_suffix(tmp_path):
    vector = steering.SteeringVector(jnp.ones(6), INFO)
    steering.save_vector(tmp_path / "v.safetensors", vector)
    (tmp_path / "v.json").unlink()
    with pytest.raises(FileNotFoundError, match="metadata"):
        steering.load_vector(tmp_path / "v.safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        steering.save_vector(tmp_path / "v.npy", vector)


def test_check_vector_fits_names_every_mismatch():
    vector = steering.SteeringVector(jnp.ones(6), INFO)
    steering.check_vector_fits(vector, site="layers.1.resid_post", d_model=6, model_name="tiny-a")
    with pytest.raises(steering.VectorMismatchError, match="layers.3.resid_post.*width 6.*transfer_vector"):
        steering.check_vector_fits(vector, site="layers.3.resid_post", d_model=8)
    with pytest.raises(steering.VectorMismatchError, match="model 'tiny-a'"):
        steering.check_vector_fits(vector, site="layers.1.resid_post", d_model=6, model_name="tiny-b")
