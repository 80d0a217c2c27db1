"""save_map/load_map round-trips every state type with its metadata."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import paired_data
from lrt_jax import mappers

MAPPERS = {
    "ridge_gcv": mappers.ridge(alphas=[0.1, 1.0]),
    "cca": mappers.cca(2),
    "chain": mappers.chain(mappers.standardize(), mappers.pca(4), mappers.lstsq()),
    "mlp": mappers.gradient("mlp", steps=2, hidden=8),
}


@pytest.mark.parametrize("name", sorted(MAPPERS))
def test_round_trip(tmp_path, name):
    x, y = paired_data(d_s=6, d_t=3)
    x, y = x.astype(np.float32), y.astype(np.float32)
    mapper = MAPPERS[name]
    state = mapper.fit(x, y)
    metadata = {"solver": name, "hyperparameters": {"alphas": [0.1, 1.0]},
                "source_model": "tiny-a", "target_model": "tiny-b",
                "source_site": "layers.1.resid_post", "target_site": "layers.3.resid_post"}
    mappers.save_map(tmp_path / "map", state, metadata)
    restored, restored_metadata = mappers.load_map(tmp_path / "map")
    assert restored_metadata == metadata
    assert type(restored) is type(state)
    np.testing.assert_array_equal(mapper.apply(restored, x), mapper.apply(state, x))


def test_save_refuses_bad_metadata_and_existing_paths(tmp_path):
    state = mappers.lstsq().fit(*paired_data(d_s=3, d_t=2))
    with pytest.raises(ValueError, match="JSON-serialisable"):
        mappers.save_map(tmp_path / "a", state, {"weights": np.ones(2)})
    mappers.save_map(tmp_path / "b", state, {})
    with pytest.raises(ValueError, match="already exists"):
        mappers.save_map(tmp_path / "b", state, {})
    with pytest.raises(ValueError, match="not a saved map"):
        mappers.load_map(tmp_path)
