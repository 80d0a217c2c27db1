"""Writing a :class:`~lrt_jax.lrt.bench.BenchResult`: the leaderboard, the layer choice, plots, the rows used.

Files (in ``out_dir``):

* ``leaderboard.json`` — the list of tidy rows (``solver``, ``alpha``, ``source_site``,
  ``target_site``, ``metric``, ``value``, ``ci_low``, ``ci_high``, plus ``attribute`` for
  ``steering_preservation``: one row per attribute and ``"all"``, their mean); strict JSON.
* ``leaderboard.csv`` — the same rows; ``leaderboard.md`` — the solvers' means over the
  benchmarked layer pairs, the layer-choice comparison and the rows of the automatic pair.
* ``bench.json`` — models, configuration, solvers, the layer choice (:class:`LayerChoice`), wall time.
* ``solver_scores.png`` (solver × score), ``r2_vs_steering.png`` (with Spearman ρ) and
  ``layer_pairs.png`` (R², CKA and steering-preservation heatmaps, rule choices marked).
* with :func:`save_bench_activations`, ``activations.safetensors``: the exact rows, under
  ``"source/{site}/train"``, ``"source/{site}/test"``, ``"target/{site}/train"`` and
  ``"target/{site}/test"`` (``[n_rows, d_model]``, row ``r`` of the source and target
  arrays is the same token), so another library can refit a solver and check a score.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from lrt_jax.lrt.bench import ALL_ATTRIBUTES, METRICS, BenchResult, site_of, spearman_rho
from lrt_jax.lrt.report import new_figure, save_figure
from lrt_jax.outputs import atomic_path, write_json_atomic, write_text_atomic

REPORT_FILES = ("leaderboard.json", "leaderboard.csv", "leaderboard.md", "bench.json", "solver_scores.png",
                "r2_vs_steering.png", "layer_pairs.png")
ACTIVATIONS_FILE = "activations.safetensors"
FIELDS = ("solver", "alpha", "source_site", "target_site", "metric", "value", "ci_low", "ci_high", "attribute")
SHOWN = ("r2", "cka", "cosine", "knn", "steering_preservation", "substitution_kl", "fit_seconds")


def _headline(row) -> bool:
    return row.metric != "steering_preservation" or row.attribute == ALL_ATTRIBUTES


def solver_means(result: BenchResult) -> dict[str, dict[str, float]]:
    """``{solver: {metric: mean over the benchmarked layer pairs}}`` (steering: the ``"all"`` rows)."""
    table: dict[str, dict[str, list]] = {name: {metric: [] for metric in METRICS} for name in result.solvers}
    for row in result.rows:
        if _headline(row):
            table[row.solver][row.metric].append(row.value)
    return {name: {metric: float(np.mean(values)) if values else float("nan") for metric, values in scores.items()}
            for name, scores in table.items()}


def _order(means: dict) -> list[str]:
    """Solvers by how close steering preservation is to 1 (then by R²), the best first."""
    def key(name):
        steering = means[name]["steering_preservation"]
        return (abs(1.0 - steering) if math.isfinite(steering) else math.inf, -means[name]["r2"])

    return sorted(means, key=key)


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.3f}"


def leaderboard_markdown(result: BenchResult) -> str:
    """The Markdown leaderboard (module docstring)."""
    means = _order_means(result)
    choice = result.layer_choice
    n_pairs = len({(row.source_site, row.target_site) for row in result.rows})
    lines = [f"# Mapper benchmark: {result.source} → {result.target}", "",
             f"{len(result.solvers)} solvers × {n_pairs} layer pairs; held-out scores with bootstrap "
             f"{100 * result.config.confidence:.0f}% intervals in leaderboard.json/.csv; "
             f"{result.wall_seconds:.0f} s.", "",
             "## Solvers (mean over the layer pairs; steering preservation closest to 1 first)", "",
             "| solver | " + " | ".join(SHOWN) + " |", "|" + "---|" * (len(SHOWN) + 1)]
    lines += [f"| `{name}` | " + " | ".join(_number(scores[m]) for m in SHOWN) + " |" for name, scores in means.items()]
    lines += ["", "## Layer choice (ridge, α by GCV, every layer pair)", "",
              "| rule | target layer per source layer | steering preservation reached |", "|---|---|---|"]
    lines += [f"| {rule} | {', '.join(str(int(j)) for j in layers)} | {_number(choice.reached[rule])} |"
              for rule, layers in choice.choices.items()]
    lines += ["", "Spearman ρ over all layer pairs with steering preservation: "
              + ", ".join(f"{score} {_number(rho)}" for score, rho in choice.spearman.items()) + ".", "",
              f"Best geometric rule: **{choice.best_rule or 'n/a (no attributes)'}**; automatic pair "
              f"{choice.auto_pair[0]} → {choice.auto_pair[1]}.", ""]
    source_site, target_site = site_of(choice.auto_pair[0]), site_of(choice.auto_pair[1])
    rows = [row for row in result.rows if (row.source_site, row.target_site) == (source_site, target_site)]
    if rows:
        lines += [f"## Rows of the automatic pair ({source_site} → {target_site})", "",
                  "| solver | α | metric | attribute | value | 95% interval |", "|---|---|---|---|---|---|"]
        lines += [f"| `{row.solver}` | {_number(row.alpha)} | {row.metric} | {row.attribute or ''} | "
                  f"{_number(row.value)} | {_interval_text(row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def _order_means(result: BenchResult) -> dict:
    means = solver_means(result)
    return {name: means[name] for name in _order(means)}


def _interval_text(row) -> str:
    return "" if row.ci_low is None else f"[{_number(row.ci_low)}, {_number(row.ci_high)}]"


def leaderboard_csv(result: BenchResult) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({key: "" if value is None else value for key, value in row.to_dict().items()})
    return buffer.getvalue()


def plot_solver_scores(result: BenchResult, path: Path) -> None:
    """Solver × score: each column coloured by rank (best dark), annotated with the mean value."""
    means = _order_means(result)
    names, values = list(means), np.asarray([[means[n][m] for m in SHOWN] for n in means])
    better_high = np.asarray([m in ("r2", "cka", "cosine", "knn") for m in SHOWN])
    goodness = np.where(better_high, values, -values)
    goodness[:, SHOWN.index("steering_preservation")] = -np.abs(1.0 - values[:, SHOWN.index("steering_preservation")])
    ranks = np.argsort(np.argsort(np.where(np.isfinite(goodness), goodness, -np.inf), axis=0), axis=0)
    fig = new_figure((1.3 * len(SHOWN) + 4.5, 0.42 * len(names) + 1.6))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    ax.imshow(ranks / max(len(names) - 1, 1), cmap="Greens", aspect="auto", vmin=-0.2, vmax=1.1)
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, _number(value), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(SHOWN)), [m.replace("_", "\n") for m in SHOWN], fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_title(f"{result.source} → {result.target}: mean over layer pairs (darker = better in its column)",
                 fontsize=9)
    save_figure(fig, path)


def r2_and_steering(result: BenchResult) -> tuple[np.ndarray, np.ndarray]:
    """Paired ``(R², steering preservation "all")`` of every solver × layer pair."""
    r2 = {(r.solver, r.source_site, r.target_site): r.value for r in result.rows if r.metric == "r2"}
    steering = {(r.solver, r.source_site, r.target_site): r.value for r in result.rows
                if r.metric == "steering_preservation" and r.attribute == ALL_ATTRIBUTES}
    keys = [key for key in r2 if key in steering]
    return np.asarray([r2[k] for k in keys]), np.asarray([steering[k] for k in keys])


def plot_r2_vs_steering(result: BenchResult, path: Path) -> float:
    """Scatter of R² against steering preservation over solvers × pairs; returns Spearman ρ (NaN if undefined)."""
    r2, steering = r2_and_steering(result)
    rho = spearman_rho(r2, steering) if len(r2) else float("nan")
    fig = new_figure((5.2, 4.0))
    ax = fig.subplots()
    ax.scatter(r2, steering, s=14, alpha=0.7)
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_xlabel("held-out R²")
    ax.set_ylabel("steering preservation (transferred / native shift)")
    ax.set_title(f"{result.source} → {result.target}: Spearman ρ = {_number(rho)} (n = {len(r2)})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return rho


def plot_layer_pairs(result: BenchResult, path: Path) -> None:
    """R², CKA and steering-preservation heatmaps over all layer pairs, each rule's choices marked."""
    choice = result.layer_choice
    panels = (("held-out R² (ridge)", choice.r2), ("linear CKA of the layers", choice.cka),
              ("steering preservation", choice.steering_preservation))
    markers = {"relative_depth": ("s", "deepskyblue"), "argmax_r2": ("o", "red"), "argmax_cka": ("^", "orange"),
               "argmax_steering": ("*", "black")}
    fig = new_figure((12.5, 3.8))
    fig.set_layout_engine("constrained")
    for ax, (title, matrix) in zip(fig.subplots(1, 3), panels):
        image = ax.imshow(matrix, origin="lower", aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax)
        for rule, layers in choice.choices.items():
            marker, color = markers[rule]
            ax.scatter(layers, np.arange(len(layers)), marker=marker, facecolors="none", edgecolors=color, s=90,
                       label=rule)
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
        ax.set_xlabel(f"{result.target} layer")
        ax.set_ylabel(f"{result.source} layer")
        ax.set_title(title, fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncols=len(markers))
    save_figure(fig, path)


def write_bench_report(result: BenchResult, out_dir) -> str:
    """Write every report file of the module docstring into ``out_dir``; returns the Markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "leaderboard.json", [row.to_dict() for row in result.rows])
    write_text_atomic(out_dir / "leaderboard.csv", leaderboard_csv(result))
    markdown = leaderboard_markdown(result)
    write_text_atomic(out_dir / "leaderboard.md", markdown)
    plot_solver_scores(result, out_dir / "solver_scores.png")
    rho = plot_r2_vs_steering(result, out_dir / "r2_vs_steering.png")
    plot_layer_pairs(result, out_dir / "layer_pairs.png")
    summary = {"source": result.source, "target": result.target, "config": dataclasses.asdict(result.config),
               "solvers": list(result.solvers), "layer_choice": result.layer_choice.to_dict(),
               "spearman_r2_vs_steering": rho, "wall_seconds": result.wall_seconds,
               "activation_keys": "source/{site}/train, source/{site}/test, target/{site}/train, target/{site}/test"}
    write_json_atomic(out_dir / "bench.json", summary)
    return markdown


def save_bench_activations(result: BenchResult, path) -> None:
    """The exact rows of the benchmark as one safetensors file (keys in the module docstring)."""
    from safetensors.numpy import save_file

    arrays = {key: np.ascontiguousarray(value, np.float32) for key, value in result.activations.items()}
    with atomic_path(path) as temporary:
        save_file(arrays, str(temporary), metadata={"source": result.source, "target": result.target,
                                                    "layout": "[n_rows, d_model]; row r pairs the same token"})
