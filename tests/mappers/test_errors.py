"""Bad input fails at the boundary with a message that says what to do."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import paired_data, relative_error
from lrt_jax import mappers


def test_row_count_mismatch():
    x, y = paired_data()
    with pytest.raises(ValueError, match=r"x has n=400 rows but y has n=399"):
        mappers.ridge(1.0).fit(x, y[:-1])
    with pytest.raises(ValueError, match="rows must be paired"):
        mappers.accumulate_stats(mappers.init_stats(12, 7), x[:5], y[:4])


@pytest.mark.parametrize("mapper", [mappers.ridge(1.0), mappers.lstsq(), mappers.cca(2),
                                    mappers.gradient(steps=1), mappers.pca(2)],
                         ids=["ridge", "lstsq", "cca", "gradient", "pca"])
def test_nan_and_inf_rows_are_named_and_counted(mapper):
    x, y = paired_data()
    x[[3, 9], 1] = np.nan
    x[9, 2] = np.inf
    with pytest.raises(ValueError, match=r"x has 2 of 400 rows with NaN or Inf \(first at row 3\)"):
        mapper.fit(x, y)


@pytest.mark.parametrize("mapper", [mappers.ridge(1.0), mappers.cca(2), mappers.gradient(steps=1)],
                         ids=["ridge", "cca", "gradient"])
def test_nonfinite_targets_are_named(mapper):
    x, y = paired_data()
    y[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"y has 1 of 400 rows with NaN or Inf \(first at row 5\)"):
        mapper.fit(x, y)


def test_nonfinite_streamed_stats_are_refused():
    x, y = paired_data()
    y[0, 0] = np.nan
    stats = mappers.accumulate_stats(mappers.init_stats(12, 7), x, y)
    with pytest.raises(ValueError, match="NaN or Inf"):
        mappers.ridge(1.0).fit_from_stats(stats)


def test_too_few_rows_for_unregularised_cca_suggests_ridge():
    x, y = paired_data(n=10, d_s=12, d_t=4)
    with pytest.raises(ValueError, match=r"n=10 <= d=12.*ridge"):
        mappers.cca(2).fit(x, y)
    assert np.isfinite(mappers.cca(2, alpha=0.1).fit(x, y).weight).all()


def test_rank_larger_than_widths():
    x, y = paired_data(d_s=6, d_t=4)
    with pytest.raises(ValueError, match=r"rank=5 must be between 1 and min\(d_s, d_t\)"):
        mappers.reduced_rank(5).fit(x, y)
    with pytest.raises(ValueError, match=r"k=5 must be between 1"):
        mappers.cca(5).fit(x, y)
    with pytest.raises(ValueError, match="k <= d_s"):
        mappers.pca(7).fit(x)


@pytest.mark.parametrize("factory", [
    lambda: mappers.ridge(-1.0), lambda: mappers.ridge(alphas=[1.0, -0.5]),
    lambda: mappers.reduced_rank(2, alpha=-3.0), lambda: mappers.cca(2, alpha=-1e-3),
], ids=["ridge", "ridge-grid", "reduced_rank", "cca"])
def test_negative_alpha(factory):
    with pytest.raises(ValueError, match=">= 0"):
        factory()


def test_misc_arguments():
    with pytest.raises(ValueError, match="exactly one of alpha"):
        mappers.ridge()
    with pytest.raises(ValueError, match="select must be one of"):
        mappers.ridge(alphas=[1.0], select="aic")
    with pytest.raises(ValueError, match="2-D array"):
        mappers.lstsq().fit(np.ones((2, 3, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="list of per-fold"):
        mappers.ridge(alphas=[1.0], select="kfold").fit_from_stats(
            mappers.accumulate_stats(mappers.init_stats(2, 1), np.ones((3, 2)), np.ones((3, 1))))


@pytest.mark.parametrize("name", ["duplicated", "condition_1e6", "n_below_d"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ill_conditioned_inputs_never_give_silent_nan(x64, name, dtype):
    # All cases have d_s = 14 so the solvers compile once per dtype.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 14))
    if name == "duplicated":
        x[:, 10:] = x[:, :4]
    elif name == "condition_1e6":
        u, _, vt = np.linalg.svd(x, full_matrices=False)
        x = u @ np.diag(np.logspace(0, -6, 14)) @ vt * 30
    else:
        x = x[:8]
    y = x @ rng.standard_normal((x.shape[1], 3)) + 0.01 * rng.standard_normal((len(x), 3))
    x, y = x.astype(dtype), y.astype(dtype)
    for mapper in [mappers.lstsq(), mappers.ridge(1e-8), mappers.ridge(alphas=[0.0, 1e-3, 1.0]),
                   mappers.ridge(alphas=[0.0, 1.0], select="loo"), mappers.reduced_rank(2),
                   mappers.procrustes(), mappers.cca(2, alpha=1e-3),
                   mappers.chain(mappers.whiten(), mappers.ridge(1.0))]:
        state = mapper.fit(x, y)
        assert np.isfinite(np.asarray(mapper.apply(state, x))).all()
    # lstsq gives the minimum-norm least-squares fit: its fitted values match NumPy's.
    # In float32 the centred x is only rank-deficient up to rounding, so the
    # reference truncates at that rounding level too.
    reference = np.linalg.lstsq((x - x.mean(0)).astype(np.float64),
                                (y - y.mean(0)).astype(np.float64),
                                rcond=1e-4 if dtype == "float32" else None)[0]
    lstsq_state = mappers.lstsq().fit(x, y)
    fitted = (x - x.mean(0)) @ np.asarray(lstsq_state.weight)
    assert relative_error(fitted, (x - x.mean(0)) @ reference) <= (1e-6 if dtype == "float64" else 1e-2)
    if name != "condition_1e6":
        assert relative_error(lstsq_state.weight, reference) <= (1e-6 if dtype == "float64" else 1e-2)
