"""The LRT comparison: does a transferred vector steer the target model like its native vector?

Input is one propensity table of the *target* model holding several vectors under
the same items and α grid: ``native`` (estimated in the target model), the
``transferred`` one (mapped from the source model) and controls — a random vector of
the same norm and the source vector ``unmapped`` (zero-padded or truncated), see
:func:`lrt_jax.steering.random_vector_like` and :func:`lrt_jax.steering.unmapped_vector`.

Each compared vector gets, from :func:`lrt_jax.steering.compare_propensities`:

* per α, the Pearson correlation across items and the MSE of propensities against
  the native vector (the LRT paper's Table 1) — metrics ``"pearson"`` and ``"mse"``;
* its steerability slope (least squares of mean propensity on α), beside the native
  vector's — metric ``"slope"``.

The result is again a tidy :class:`~lrt_jax.results.ResultsTable` (``item`` is -1:
the values aggregate over items; ``alpha`` is NaN for slopes, which span all α),
so it exports and filters like any score table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lrt_jax.outputs import atomic_path
from lrt_jax.results import ResultRecord, ResultsTable
from lrt_jax.steering import compare_propensities, steerability_slope

ACROSS_ITEMS = -1  # the item index of values that aggregate over items


def _single_model_and_task(table: ResultsTable) -> tuple[str, str]:
    pairs = {(r.task, r.model) for r in table.records}
    if len(pairs) != 1:
        raise ValueError(f"The table mixes tasks/models {sorted(pairs)}; select one task and one model "
                         "(ResultsTable.select) before comparing vectors.")
    return pairs.pop()


def lrt_comparison(table: ResultsTable, *, metric: str = "logit_diff", native: str = "native",
                   compared: Sequence[str] | None = None) -> ResultsTable:
    """Per-α Pearson and MSE against ``native``, and steerability slopes, for each compared vector.

    Args:
      table: propensities of one task and model (e.g. from :func:`score_propensity`).
      metric: the propensity metric to compare.
      native: the name of the native vector.
      compared: vector names to compare with it; default every other vector in the table.

    Returns:
      A :class:`~lrt_jax.results.ResultsTable` with metrics ``"pearson"``, ``"mse"`` (per
      α) and ``"slope"`` (per vector, the native one included).
    """
    task, model = _single_model_and_task(table)
    alphas, native_values = table.propensity_matrix(vector=native, metric=metric)
    if compared is None:
        compared = sorted({r.vector for r in table.records} - {native})
    if not compared:
        raise ValueError(f"Nothing to compare with {native!r}: the table holds no other vector.")
    records = [ResultRecord(task, model, native, float("nan"), ACROSS_ITEMS, "slope",
                            float(steerability_slope(alphas, native_values).mean_slope))]
    for name in compared:
        other_alphas, values = table.propensity_matrix(vector=name, metric=metric)
        if not np.array_equal(other_alphas, alphas) or values.shape != native_values.shape:
            raise ValueError(f"Vector {name!r} was scored on α {other_alphas.tolist()} × {values.shape[1]} items, "
                             f"{native!r} on α {alphas.tolist()} × {native_values.shape[1]} items; score both alike.")
        result = compare_propensities(alphas, native_values, values)
        for alpha, pearson, mse in zip(alphas, np.asarray(result.pearson), np.asarray(result.mse)):
            records.append(ResultRecord(task, model, name, float(alpha), ACROSS_ITEMS, "pearson", float(pearson)))
            records.append(ResultRecord(task, model, name, float(alpha), ACROSS_ITEMS, "mse", float(mse)))
        records.append(ResultRecord(task, model, name, float("nan"), ACROSS_ITEMS, "slope",
                                    float(result.transferred_slope.mean_slope)))
    return ResultsTable(tuple(records))


def format_lrt_comparison(comparison: ResultsTable) -> str:
    """A plain-text table: one line per compared vector × α (Pearson, MSE), then the slopes."""
    lines = [f"{'vector':<14}{'alpha':>9}{'pearson':>10}{'mse':>12}"]
    per_alpha = {(r.vector, r.alpha, r.metric): r.value for r in comparison.records if r.metric != "slope"}
    for vector, alpha in sorted({(v, a) for v, a, _ in per_alpha}):
        lines.append(f"{vector:<14}{alpha:>9.3g}{per_alpha[(vector, alpha, 'pearson')]:>10.3f}"
                     f"{per_alpha[(vector, alpha, 'mse')]:>12.4g}")
    lines.append("steerability slope (mean propensity per unit α): " + ", ".join(
        f"{r.vector}={r.value:.4g}" for r in comparison.records if r.metric == "slope"))
    return "\n".join(lines)


def plot_lrt_comparison(table: ResultsTable, path, *, metric: str = "logit_diff", native: str = "native",
                        transferred: Sequence[str] = ("transferred",), controls: Sequence[str] = ()) -> None:
    """Mean propensity ± s.e. against α: native and transferred vectors solid, controls dashed.

    Args:
      table: propensities of one task and model.
      path: image file to write (format from the suffix).
      metric: the propensity metric.
      native, transferred, controls: vector names in the table.
    """
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    styles = [(native, "-")] + [(name, "-") for name in transferred] + [(name, "--") for name in controls]
    for name, line_style in styles:
        alphas, values = table.propensity_matrix(vector=name, metric=metric)
        means = values.mean(axis=1)
        errors = values.std(axis=1, ddof=1) / np.sqrt(values.shape[1]) if values.shape[1] > 1 else 0 * means
        axes.plot(alphas, means, line_style, marker="o", label=name)
        axes.fill_between(alphas, means - errors, means + errors, alpha=0.15)
    axes.set_xlabel("steering strength α")
    axes.set_ylabel(f"{metric} (mean ± s.e. over items)")
    axes.set_title("native vs transferred steering (controls dashed)")
    axes.legend(title="vector")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or None)
