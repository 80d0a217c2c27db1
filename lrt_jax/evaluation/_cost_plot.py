"""Effect against cost of steering: where along α a vector starts to damage the model.

:func:`plot_effect_vs_cost` pairs a task table (e.g. :func:`score_propensity`) with a cost
table (:func:`score_steering_cost`) on the same vectors and α grid: one line per vector,
one point per α at (mean cost over texts, mean effect over items), each point labelled
with its α.
"""

from __future__ import annotations

import pathlib
from collections import defaultdict

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lrt_jax.outputs import atomic_path
from lrt_jax.results import ResultsTable


def _means(table: ResultsTable, metric: str, which: str) -> dict:
    rows = table.select(metric=metric).records
    if not rows:
        present = sorted({r.metric for r in table.records})
        raise ValueError(f"The {which} table has no rows with metric={metric!r}; it holds {present}.")
    values = defaultdict(list)
    for r in rows:
        values[(r.vector, float(r.alpha))].append(r.value)
    return {key: float(np.mean(v)) for key, v in values.items()}


def plot_effect_vs_cost(effect_table: ResultsTable, cost_table: ResultsTable, path, *,
                        effect_metric: str = "logit_diff", cost_metric: str = "kl_next_token") -> dict:
    """Plot mean effect over items against mean cost over texts, one line per vector, α annotated.

    Args:
      effect_table: task results (rows of ``effect_metric``), e.g. from :func:`score_propensity`.
      cost_table: cost results (rows of ``cost_metric``), e.g. from :func:`score_steering_cost`.
      path: image file to write (format from the suffix), written atomically.
      effect_metric, cost_metric: the metrics on the y and x axes.

    Returns:
      ``{vector: (x, y)}``: float arrays over the α both tables hold for that vector, in
      increasing α — x the mean cost, y the mean effect.

    Raises:
      ValueError: a metric is missing, or the tables share no (vector, α).
    """
    effect = _means(effect_table, effect_metric, "effect")
    cost = _means(cost_table, cost_metric, "cost")
    shared = sorted(set(effect) & set(cost), key=lambda key: (str(key[0]), key[1]))
    if not shared:
        raise ValueError(
            f"The effect and cost tables share no (vector, α): effect has vectors "
            f"{sorted({v for v, _ in effect}, key=str)} at α {sorted({a for _, a in effect})}, cost has "
            f"{sorted({v for v, _ in cost}, key=str)} at α {sorted({a for _, a in cost})}.")
    by_vector = defaultdict(list)
    for vector, alpha in shared:
        by_vector[vector].append(alpha)

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)  # Attaches a non-interactive canvas; no pyplot global state.
    axes = figure.add_subplot()
    curves = {}
    for vector, alphas in by_vector.items():
        x = np.array([cost[(vector, a)] for a in alphas])
        y = np.array([effect[(vector, a)] for a in alphas])
        curves[vector] = (x, y)
        axes.plot(x, y, marker="o", label=str(vector))
        for a, xi, yi in zip(alphas, x, y):
            axes.annotate(f"{a:g}", (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    axes.set_xlabel(f"{cost_metric} (mean over texts)")
    axes.set_ylabel(f"{effect_metric} (mean over items)")
    axes.set_title("effect vs cost of steering (points labelled with α)")
    axes.legend(title="vector")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=pathlib.Path(path).suffix.lstrip(".") or None)
    return curves
