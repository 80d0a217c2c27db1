"""save_map/load_map: every state type round-trips through one .safetensors file, and the
saved MapInfo is checked on use (models, sites, widths), with clear errors for damaged,
old-format or wrong-kind files."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

from conftest import paired_data
from lrt_jax import mappers, steering

MAPPERS = {
    "ridge_gcv": mappers.ridge(alphas=[0.1, 1.0]),
    "lstsq": mappers.lstsq(),
    "procrustes": mappers.procrustes(),
    "reduced_rank": mappers.reduced_rank(2),
    "cca": mappers.cca(2),
    "standardize": mappers.standardize(),
    "pca": mappers.pca(3),
    "whiten": mappers.whiten(),
    "chain": mappers.chain(mappers.standardize(), mappers.pca(4), mappers.lstsq()),
    "gradient_affine": mappers.gradient("affine", steps=2),
    "mlp": mappers.gradient("mlp", steps=2, hidden=8),
}
STATE_TYPES = {"ridge_gcv": "RidgeState", "lstsq": "RidgeState", "procrustes": "AffineState",
               "reduced_rank": "ReducedRankState", "cca": "CCAState", "standardize": "ScalingState",
               "pca": "LinearTransformState", "whiten": "LinearTransformState", "chain": "ChainState",
               "gradient_affine": "GradientAffineState", "mlp": "MLPState"}


def make_info(source_width=6, target_width=3, **changes):
    fields = dict(source_model="tiny-a", target_model="tiny-b", source_site="layers.1.resid_post",
                  target_site="layers.3.resid_post", source_width=source_width, target_width=target_width,
                  solver="ridge", hyperparameters={"alphas": [0.1, 1.0], "select": "gcv"}, n_fit=40,
                  reduce="last", dataset="prompts.txt", heldout_r2=0.5)
    return mappers.MapInfo(**{**fields, **changes})


def fitted(name="ridge_gcv"):
    x, y = paired_data(d_s=6, d_t=3)
    x, y = x.astype(np.float32), y.astype(np.float32)
    return x, MAPPERS[name].fit(x, y)


@pytest.mark.parametrize("name", sorted(MAPPERS))
def test_every_state_type_round_trips_leaf_for_leaf(tmp_path, name):
    x, state = fitted(name)
    target_width = jax.tree.leaves(MAPPERS[name].apply(state, x[:1]))[0].shape[-1]
    info = make_info(target_width=target_width)
    path = mappers.save_map(state, tmp_path / "map.safetensors", info)
    loaded = mappers.load_map(path)
    assert type(loaded.state).__name__ == STATE_TYPES[name] and type(loaded.state) is type(state)
    assert loaded.info == info and loaded.path == path
    assert jax.tree.structure(loaded.state) == jax.tree.structure(state)
    for restored, original in zip(jax.tree.leaves(loaded.state), jax.tree.leaves(state)):
        assert restored.dtype == original.dtype
        np.testing.assert_array_equal(restored, original)
    np.testing.assert_array_equal(MAPPERS[name].apply(loaded.state, x), MAPPERS[name].apply(state, x))


def test_streamed_statistics_round_trip(tmp_path):
    x, y = paired_data(d_s=6, d_t=3)
    stats = mappers.accumulate_stats(mappers.init_stats(6, 3), x.astype(np.float32), y.astype(np.float32))
    loaded = mappers.load_map(mappers.save_map(stats, tmp_path / "s.safetensors", make_info()))
    assert type(loaded.state) is mappers.SufficientStats
    for restored, original in zip(jax.tree.leaves(loaded.state), jax.tree.leaves(stats)):
        np.testing.assert_array_equal(restored, original)
    assert np.asarray(loaded.state.count).item() == len(x) and loaded.state.yty is None


def test_file_is_plain_safetensors_named_by_tree_path_with_the_info_in_its_header(tmp_path):
    _, state = fitted("chain")
    mappers.save_map(state, tmp_path / "map.safetensors", make_info())
    tensors = safetensors.numpy.load_file(str(tmp_path / "map.safetensors"))
    np.testing.assert_array_equal(tensors["stages.0.mean"], state.stages[0].mean)
    np.testing.assert_array_equal(tensors["stages.2.weight"], state.stages[2].weight)
    with safe_open(str(tmp_path / "map.safetensors"), framework="np") as file:
        header = file.metadata()
    assert header["format"] == "lrt_jax.artifact" and header["kind"] == "map"
    assert json.loads(header["info"])["source_site"] == "layers.1.resid_post"


def test_loaded_affine_map_applies_as_x_at_w_plus_b(tmp_path):
    x, state = fitted("ridge_gcv")
    loaded = mappers.load_map(mappers.save_map(state, tmp_path / "m.safetensors", make_info()))
    weight, offset = np.asarray(state.weight, np.float64), np.asarray(state.bias, np.float64)
    np.testing.assert_allclose(loaded.apply(x), x.astype(np.float64) @ weight + offset, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(mappers.linear(loaded), state.weight)
    np.testing.assert_array_equal(mappers.bias(loaded), state.bias)


def test_transfer_vector_through_a_loaded_map_is_v_at_w(tmp_path):
    _, state = fitted("ridge_gcv")
    loaded = mappers.load_map(mappers.save_map(state, tmp_path / "m.safetensors", make_info()))
    info = steering.VectorInfo("tiny-a", "layers.1.resid_post", 6, "last_token", "diff_of_means")
    v = np.linspace(-1.0, 1.0, 6, dtype=np.float32)
    result = steering.transfer_vector(steering.SteeringVector(jnp.asarray(v), info), loaded, mode="affine",
                                      target_model="tiny-b", target_site="layers.3.resid_post")
    expected = v.astype(np.float64) @ np.asarray(state.weight, np.float64) + np.asarray(state.bias, np.float64)
    np.testing.assert_allclose(result.vector, expected, rtol=1e-5, atol=1e-6)


def test_loaded_map_applied_to_another_width_names_file_site_and_both_widths(tmp_path):
    _, state = fitted("mlp")
    loaded = mappers.load_map(mappers.save_map(state, tmp_path / "m.safetensors", make_info()))
    with pytest.raises(mappers.MapMismatchError, match=r"width 8 .*m\.safetensors takes width 6 .*layers\.1"):
        loaded.apply(np.ones((2, 8), np.float32), MAPPERS["mlp"].apply)
    with pytest.raises(mappers.NotAffineError):
        loaded.apply(np.ones((2, 6), np.float32))


def test_load_map_checks_every_given_expectation(tmp_path):
    _, state = fitted()
    path = mappers.save_map(state, tmp_path / "m.safetensors", make_info())
    mappers.load_map(path, source_model="tiny-a", target_model="tiny-b", source_site="layers.1.resid_post",
                     target_site="layers.3.resid_post", source_width=6, target_width=3)
    with pytest.raises(mappers.MapMismatchError, match=r"m\.safetensors does not fit: its source_site is "
                                                       r"'layers\.1\.resid_post', not 'layers\.2\.resid_post'"):
        mappers.load_map(path, source_site="layers.2.resid_post")
    with pytest.raises(mappers.MapMismatchError, match=r"target_width is 3, not 4.*target_model is 'tiny-b', not 'c'"):
        mappers.load_map(path, target_width=4, target_model="c")


def test_model_names_match_as_two_spellings_of_one_checkpoint(tmp_path, monkeypatch):
    (tmp_path / "ckpt").mkdir()
    _, state = fitted()
    path = mappers.save_map(state, tmp_path / "m.safetensors", make_info(source_model=str(tmp_path / "ckpt")))
    monkeypatch.chdir(tmp_path)
    mappers.load_map(path, source_model="./ckpt/")


def test_save_refuses_overwrite_wrong_widths_bad_info_and_suffix(tmp_path):
    _, state = fitted()
    path = mappers.save_map(state, tmp_path / "m.safetensors", make_info())
    with pytest.raises(FileExistsError, match=r"m\.safetensors exists; pass --overwrite \(overwrite=True"):
        mappers.save_map(state, path, make_info())
    mappers.save_map(state, path, make_info(n_fit=7), overwrite=True)
    assert mappers.load_map(path).info.n_fit == 7
    with pytest.raises(ValueError, match=r"maps width 6 to 3 but info says 5 → 3"):
        mappers.save_map(state, tmp_path / "w.safetensors", make_info(source_width=5))
    with pytest.raises(ValueError, match="JSON-serialisable"):
        mappers.save_map(state, tmp_path / "j.safetensors", make_info(hyperparameters={"w": object()}))
    with pytest.raises(TypeError, match="must be a MapInfo"):
        mappers.save_map(state, tmp_path / "d.safetensors", {"solver": "ridge"})
    with pytest.raises(ValueError, match=r"ending in \.safetensors"):
        mappers.save_map(state, tmp_path / "m.npz", make_info())
    with pytest.raises(ValueError, match="positive int"):
        make_info(source_width=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary files left


def test_damaged_old_and_foreign_files_name_the_file(tmp_path):
    _, state = fitted()
    path = mappers.save_map(state, tmp_path / "m.safetensors", make_info())
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"t\.safetensors is not a readable safetensors file.*truncated"):
        mappers.load_map(truncated)
    plain = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file({"weight": np.ones((2, 2), np.float32)}, str(plain))
    with pytest.raises(ValueError, match=r"plain\.safetensors is a safetensors file without an lrt_jax\.artifact "
                                         r"header.*save_map"):
        mappers.load_map(plain)
    old = tmp_path / "old_map"
    old.mkdir()
    (old / "map.json").write_text("{}")
    with pytest.raises(ValueError, match=r"old_map is a map directory in the old orbax format.*lrt-jax fit"):
        mappers.load_map(old)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match=r"without map\.safetensors"):
        mappers.load_map(tmp_path / "empty_dir")
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors does not exist"):
        mappers.load_map(tmp_path / "missing.safetensors")
    vector = steering.SteeringVector(jnp.ones(6), steering.VectorInfo("a", "embed", 6, "last_token", "dom"))
    with pytest.raises(ValueError, match=r"v\.safetensors holds a 'steering_vector', not a 'map'.*load_vector"):
        mappers.load_map(steering.save_vector(vector, tmp_path / "v.safetensors"))


def test_a_directory_with_map_safetensors_loads_and_a_record_missing_fields_is_refused(tmp_path):
    _, state = fitted()
    info = make_info()
    mappers.save_map(state, tmp_path / "map.safetensors", info)
    assert mappers.load_map(tmp_path).info == info
    header = {"format": "lrt_jax.artifact", "version": "1", "kind": "map", "info": json.dumps({"solver": "x"}),
              "tree": json.dumps({"leaf": "value"})}
    safetensors.numpy.save_file({"value": np.ones(2, np.float32)}, str(tmp_path / "bad.safetensors"), metadata=header)
    with pytest.raises(ValueError, match=r"bad\.safetensors: its info record is incomplete"):
        mappers.load_map(tmp_path / "bad.safetensors")
    info = json.dumps(make_info().to_dict())
    header.update(info=info, tree=json.dumps({"type": "FancyState", "fields": {}}))
    safetensors.numpy.save_file({"value": np.ones(2, np.float32)}, str(tmp_path / "fancy.safetensors"), metadata=header)
    with pytest.raises(ValueError, match=r"fancy\.safetensors describes a tree .*'FancyState'"):
        mappers.load_map(tmp_path / "fancy.safetensors")
