"""The arithmetic of ``experiments/bench_mappers.py``: flop counts and the 2×-sklearn bound, by hand."""

import pytest


@pytest.fixture(scope="module")
def bench(experiment_script):
    return experiment_script("bench_mappers")


def test_problem_flops_full_and_symmetric_counts(bench):
    n, d_s, d_t = 1000, 10, 20
    solve = 10 ** 3 / 3 + 2 * 10 ** 2 * 20
    assert bench.problem_flops(n, d_s, d_t) == pytest.approx(
        2 * 1000 * 10 * 30 + solve)
    assert bench.gemm_flops(n, d_s, d_t) == 2 * 1000 * 10 * 30
    assert bench.problem_flops(n, d_s, d_t, symmetric=True) == pytest.approx(
        1000 * 100 + 2 * 1000 * 10 * 20 + solve)


def _result(sklearn_seconds):
    return {"shape": [1000, 10, 20], "gemm_gflops": 100.0,
            "paired_ridge_vs_roofline": {"gemm_gflops": 140.0},
            "library_gemm_gflops": {"numpy (OpenBLAS)": 150.0, "torch": 120.0},
            "methods": {"sklearn Ridge": {"seconds": sklearn_seconds}}}


def test_feasibility_bound_uses_least_flops_and_fastest_library(bench):
    # least flops 1000·10² + 2·1000·10·20 = 500 000; fastest GEMM 150 GFLOP/s.
    bound = 500_000 / 150e9
    f = bench.feasibility(_result(0.01))
    assert f["least_flops"] == 500_000
    assert f["fastest_gemm_gflops"] == 150.0
    assert f["lower_bound_s"] == pytest.approx(bound)
    assert f["half_sklearn_s"] == pytest.approx(0.005)
    assert f["gflops_needed_for_2x_sklearn"] == pytest.approx(500_000 / 0.005 / 1e9)
    assert f["2x_sklearn_reachable"]
    # sklearn only 1.8× the bound: halving it would need more than the fastest GEMM.
    slow = bench.feasibility(_result(1.8 * bound))
    assert not slow["2x_sklearn_reachable"]
    assert slow["gflops_needed_for_2x_sklearn"] == pytest.approx(150.0 / 0.9)
