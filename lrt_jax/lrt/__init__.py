"""The Linear Representation Transferability experiment: fit maps, transfer vectors, compare steering.

:func:`run_lrt_experiment` returns an :class:`LRTResult` (frozen dataclasses over tidy
score tables, :mod:`lrt_jax.lrt.results`); :func:`write_report` writes it as JSON, tables,
plots (the R² of every layer pair as a heatmap) and a Markdown report.

:func:`run_bench` benchmarks mapper solvers between two models by what they preserve —
R², cosine, CKA, mutual k-NN, steering preservation and substitution KL, each with a
bootstrap interval — and compares layer-pairing rules (:mod:`lrt_jax.lrt.bench`);
:func:`write_bench_report` writes its leaderboard and plots.
"""

from lrt_jax.lrt.activations import PairedActivations, paired_token_activations
from lrt_jax.lrt.bench import (
    BenchConfig, BenchResult, LayerChoice, LeaderboardRow, Solver, default_solvers, run_bench)
from lrt_jax.lrt.bench_report import save_bench_activations, write_bench_report
from lrt_jax.lrt.experiment import LRTConfig, run_lrt_experiment
from lrt_jax.lrt.maps import LayerMaps, fit_layer_maps
from lrt_jax.lrt.report import SummaryRow, format_table, summary_rows, write_report
from lrt_jax.lrt.results import VECTOR_KINDS, AttributeResult, LRTResult, TargetSteering, relative_shift
from lrt_jax.lrt.steer import contrastive_vector, generated_word_share, steered_propensity

__all__ = [
    "AttributeResult",
    "BenchConfig",
    "BenchResult",
    "LRTConfig",
    "LRTResult",
    "LayerChoice",
    "LayerMaps",
    "LeaderboardRow",
    "PairedActivations",
    "Solver",
    "SummaryRow",
    "TargetSteering",
    "VECTOR_KINDS",
    "contrastive_vector",
    "default_solvers",
    "fit_layer_maps",
    "format_table",
    "generated_word_share",
    "paired_token_activations",
    "relative_shift",
    "run_bench",
    "run_lrt_experiment",
    "save_bench_activations",
    "steered_propensity",
    "summary_rows",
    "write_bench_report",
    "write_report",
]
