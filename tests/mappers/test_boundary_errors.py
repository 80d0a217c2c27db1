"""Wrong widths, broken saved maps and interpolating fits fail (or warn) clearly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import paired_data
from lrt_jax import mappers


@pytest.mark.parametrize("mapper", [
    mappers.ridge(1.0), mappers.standardize(), mappers.pca(3),
    mappers.chain(mappers.center(), mappers.pca(3), mappers.ridge(1.0)),
    mappers.gradient("mlp", steps=2, hidden=4)], ids=["ridge", "standardize", "pca",
                                                      "chain", "mlp"])
def test_apply_with_the_wrong_width_names_both_widths(mapper):
    x, y = paired_data(n=40, d_s=6, d_t=3)
    state = mapper.fit(x.astype(np.float32), y.astype(np.float32))
    with pytest.raises(ValueError, match=r"width d=5 .* width d=6"):
        mapper.apply(state, np.ones((4, 5), np.float32))


def test_loaded_map_applied_to_other_widths_names_both_widths(tmp_path):
    x, y = paired_data(n=40, d_s=6, d_t=3)
    info = mappers.MapInfo("a", "b", "layers.0.resid_post", "layers.1.resid_post", 6, 3, "ridge")
    loaded = mappers.load_map(mappers.save_map(mappers.ridge(1.0).fit(x, y), tmp_path / "m.safetensors", info))
    with pytest.raises(ValueError, match=r"width d=8 .* width d=6"):
        mappers.apply_affine(loaded.state, np.ones((2, 8), np.float32))
    with pytest.raises(mappers.MapMismatchError, match=r"width 8 but the map .*m\.safetensors takes width 6"):
        loaded.apply(np.ones((2, 8), np.float32))


def test_merge_stats_of_different_widths_and_negative_init_raise():
    with pytest.raises(ValueError, match=r"widths \(d_s, d_t\)=\(4, 2\) and \(5, 2\)"):
        mappers.merge_stats(mappers.init_stats(4, 2), mappers.init_stats(5, 2))
    with pytest.raises(ValueError, match="target Gram"):
        mappers.merge_stats(mappers.init_stats(4, 2),
                            mappers.init_stats(4, 2, target_gram=True))
    with pytest.raises(ValueError, match="d_s=-1"):
        mappers.init_stats(-1, 2)


@pytest.mark.parametrize("mapper", [mappers.lstsq(), mappers.ridge(0)],
                         ids=["lstsq", "ridge0"])
def test_unregularised_fit_with_fewer_rows_than_dims_warns_it_interpolates(mapper):
    x, y = paired_data(n=8, d_s=12, d_t=3)
    with pytest.warns(UserWarning, match=r"interpolates.*ridge with alpha > 0"):
        mapper.fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mapper.fit(*paired_data(n=40, d_s=12, d_t=3))
