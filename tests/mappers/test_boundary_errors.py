"""Wrong widths, broken saved maps and interpolating fits fail (or warn) clearly."""

from __future__ import annotations

import json
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
    mappers.save_map(tmp_path / "map", mappers.ridge(1.0).fit(x, y))
    state, _ = mappers.load_map(tmp_path / "map")
    with pytest.raises(ValueError, match=r"width d=8 .* width d=6"):
        mappers.apply_affine(state, np.ones((2, 8), np.float32))


def test_merge_stats_of_different_widths_and_negative_init_raise():
    with pytest.raises(ValueError, match=r"widths \(d_s, d_t\)=\(4, 2\) and \(5, 2\)"):
        mappers.merge_stats(mappers.init_stats(4, 2), mappers.init_stats(5, 2))
    with pytest.raises(ValueError, match="target Gram"):
        mappers.merge_stats(mappers.init_stats(4, 2),
                            mappers.init_stats(4, 2, target_gram=True))
    with pytest.raises(ValueError, match="d_s=-1"):
        mappers.init_stats(-1, 2)


def test_load_map_of_truncated_or_unknown_record_names_the_file(tmp_path):
    x, y = paired_data(n=40, d_s=4, d_t=2)
    for name in ("truncated", "unknown"):
        mappers.save_map(tmp_path / name, mappers.ridge(1.0).fit(x, y))
    record = tmp_path / "truncated" / "map.json"
    record.write_text(record.read_text()[:40])
    with pytest.raises(ValueError, match=r"truncated/map.json is not valid JSON"):
        mappers.load_map(tmp_path / "truncated")
    record = tmp_path / "unknown" / "map.json"
    content = json.loads(record.read_text())
    content["state"]["type"] = "FancyState"
    record.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"unknown/map.json .*'FancyState'"):
        mappers.load_map(tmp_path / "unknown")


@pytest.mark.parametrize("mapper", [mappers.lstsq(), mappers.ridge(0)],
                         ids=["lstsq", "ridge0"])
def test_unregularised_fit_with_fewer_rows_than_dims_warns_it_interpolates(mapper):
    x, y = paired_data(n=8, d_s=12, d_t=3)
    with pytest.warns(UserWarning, match=r"interpolates.*ridge with alpha > 0"):
        mapper.fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mapper.fit(*paired_data(n=40, d_s=12, d_t=3))
