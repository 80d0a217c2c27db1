"""Streamed statistics: chunked fitting equals one-shot fitting; sharding sums them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import paired_data, relative_error
from lrt_jax import mappers

CLOSED_FORM = {
    "lstsq": mappers.lstsq(),
    "ridge": mappers.ridge(1.0),
    "ridge_gcv": mappers.ridge(alphas=[0.1, 1.0, 10.0]),
    "procrustes": mappers.procrustes(scale=True),
    "reduced_rank": mappers.reduced_rank(3, 0.5),
    "cca": mappers.cca(3),
    "pca_then_ridge": mappers.chain(mappers.standardize(), mappers.pca(6),
                                    mappers.ridge(0.5)),
}


def _chunked_stats(x, y, chunk, *, target_gram=False, dtype=jnp.float64):
    stats = mappers.init_stats(x.shape[1], y.shape[1], dtype=dtype,
                               target_gram=target_gram)
    for start in range(0, len(x), chunk):
        stats = mappers.accumulate_stats(stats, x[start:start + chunk],
                                         y[start:start + chunk])
    return stats


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
def test_chunked_fit_equals_one_shot_fit(x64, name):
    mapper = CLOSED_FORM[name]
    x, y = paired_data(n=333)
    stats = _chunked_stats(x, y, 50, target_gram=name == "cca")
    streamed, one_shot = mapper.fit_from_stats(stats), mapper.fit(x, y)
    assert relative_error(mappers.linear(streamed), mappers.linear(one_shot)) <= 1e-9
    assert relative_error(mappers.bias(streamed), mappers.bias(one_shot)) <= 1e-9


def test_stats_match_numpy_moments(x64):
    x, y = paired_data(n=100)
    moments = mappers.moments_from_stats(_chunked_stats(x, y, 30, target_gram=True))
    xc, yc = x - x.mean(0), y - y.mean(0)
    assert relative_error(moments.xx, xc.T @ xc) <= 1e-12
    assert relative_error(moments.xy, xc.T @ yc) <= 1e-12
    assert relative_error(moments.yy, yc.T @ yc) <= 1e-12
    assert relative_error(moments.yy_diag, (yc ** 2).sum(0)) <= 1e-12
    raw = mappers.moments_from_stats(_chunked_stats(x, y, 30), centered=False)
    assert relative_error(raw.xy, x.T @ y) <= 1e-12


def test_merge_stats_equals_accumulating_everything(x64):
    x, y = paired_data(n=120)
    merged = mappers.merge_stats(_chunked_stats(x[:50], y[:50], 50),
                                 _chunked_stats(x[50:] + 0.0, y[50:], 70))
    whole = _chunked_stats(x, y, 120)
    for a, b in zip(mappers.moments_from_stats(merged), mappers.moments_from_stats(whole)):
        if a is not None:
            assert relative_error(a, b) <= 1e-12


def test_float32_stats_survive_a_huge_mean():
    """Shifted sums keep float32 accurate when the mean is 1e4× the spread."""
    x, y = paired_data(n=2000, offset=0.0)
    x = x + 1e4
    moments = mappers.moments_from_stats(_chunked_stats(
        x.astype(np.float32), y.astype(np.float32), 500, dtype=jnp.float32))
    xc = x - x.mean(0)
    assert relative_error(moments.xx, xc.T @ xc) <= 1e-4


def test_float64_stats_need_x64():
    with pytest.raises(ValueError, match="jax_enable_x64"):
        mappers.init_stats(3, 2, dtype=jnp.float64)


def test_stats_sharded_along_n_equal_unsharded():
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from lrt_jax import mappers
        assert jax.device_count() == 8
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8 * 300, 16)).astype(np.float32) + 2
        y = rng.standard_normal((8 * 300, 5)).astype(np.float32) - 1
        mesh = Mesh(np.array(jax.devices()), ("data",))
        rows = NamedSharding(mesh, P("data", None))
        accumulate = jax.jit(mappers.accumulate_stats)
        stats = mappers.init_stats(16, 5, target_gram=True)
        sharded = accumulate(stats, jax.device_put(x, rows), jax.device_put(y, rows))
        plain = mappers.accumulate_stats(stats, x, y)
        # Compare moments: raw shifted sums Σ(x − x̄) are ~0, so their relative
        # error is pure rounding noise.
        pairs = zip(mappers.moments_from_stats(sharded), mappers.moments_from_stats(plain))
        worst = max(float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) for a, b in pairs)
        assert worst <= 1e-5, worst
        print("ok", worst)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")


@pytest.mark.parametrize("target_gram", [False, True])
def test_blocked_panelled_sums_match_numpy(x64, target_gram):
    """Row blocks (2 full + a tail) × symmetric column panels give NumPy's moments.

    d_s = 600 splits into two 300-wide panels, so XᵀX is assembled from its
    upper block-triangle; with ``target_gram`` the panels also span YᵀY.
    """
    from lrt_jax.mappers import _gram, _stats

    x, y = paired_data(n=3000, d_s=600, d_t=150)
    x, y = jnp.asarray(x), jnp.asarray(y)
    rows = _gram.block_rows(3000, 750, jnp.float64)
    assert 3000 // rows == 2 and 3000 % rows > 0, rows    # two blocks and a tail
    assert len(_gram.panel_bounds(600)) == 3       # two panels
    assert _stats._on_one_device(x, y)               # what fit(x, y) takes
    xc, yc = np.asarray(x) - np.asarray(x).mean(0), np.asarray(y) - np.asarray(y).mean(0)
    for blocked in (True, False):
        stats = _stats._accumulate(
            mappers.init_stats(600, 150, dtype=jnp.float64, target_gram=target_gram),
            x, y, blocked=blocked)
        moments = mappers.moments_from_stats(stats)
        assert float(stats.count) == 3000
        assert relative_error(moments.xx, xc.T @ xc) <= 1e-12
        assert relative_error(moments.xy, xc.T @ yc) <= 1e-12
        assert relative_error(moments.yy_diag, (yc ** 2).sum(0)) <= 1e-12
        assert relative_error(moments.mean_x, np.asarray(x).mean(0)) <= 1e-12
        if target_gram:
            assert relative_error(moments.yy, yc.T @ yc) <= 1e-12


def test_bfloat16_rows_are_summed_in_float32():
    """bf16 activations are upcast block by block: the sums are those of the bf16 values."""
    x, y = paired_data(n=1500, d_s=40, d_t=24)
    x16, y16 = jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16)
    stats = mappers.accumulate_stats(mappers.init_stats(40, 24), x16, y16)
    assert stats.xtx.dtype == jnp.float32
    exact_x = np.asarray(x16.astype(jnp.float32), np.float64)
    exact_y = np.asarray(y16.astype(jnp.float32), np.float64)
    xc, yc = exact_x - exact_x.mean(0), exact_y - exact_y.mean(0)
    moments = mappers.moments_from_stats(stats)
    assert relative_error(moments.xx, xc.T @ xc) <= 1e-5
    assert relative_error(moments.xy, xc.T @ yc) <= 1e-5
