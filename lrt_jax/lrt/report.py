"""Writing an LRT experiment's results: JSON, tidy score tables, plots, a Markdown report, a summary table.

The headline numbers per attribute and target model are taken at the largest α
(:class:`SummaryRow`): the native vector's propensity shift (nats), each other
vector's shift relative to it, the native-vs-``A v`` correlation across prompts, the
cosine between ``A v`` and the native vector and each vector's cost (mean next-token
KL). An attribute *steers* when the native shift exceeds ``STEERS_THRESHOLD`` nats;
the acceptance check (transferred ≥ 70% of native, random ≤ 10%) is reported for those.

:func:`write_report` writes, from an :class:`~lrt_jax.lrt.results.LRTResult`:
``results.json`` (its summary and the rows), ``scores.json`` and ``comparison.json``
(tidy :class:`~lrt_jax.results.ResultsTable` files), ``steering_<attribute>.png``,
``r2_layer_pairs.png`` (a heatmap of the held-out R² of every layer pair per target)
and ``report.md`` — each file atomically.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping

import numpy as np

from lrt_jax.lrt.results import VECTOR_KINDS, AttributeResult, LRTResult, TargetSteering
from lrt_jax.outputs import atomic_path, write_json_atomic, write_text_atomic

STEERS_THRESHOLD = 1.0
KIND_STYLE = {
    "native": ("tab:blue", "-"),
    "transferred_linear": ("tab:orange", "-"),
    "transferred_affine": ("tab:green", "-"),
    "random": ("tab:gray", "--"),
    "unmapped": ("tab:red", "--"),
}


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """The headline numbers of one attribute × target at the largest α.

    Attributes:
      attribute, target: which row.
      native_shift: the native vector's mean propensity change from α = 0 (nats).
      steers: ``native_shift > STEERS_THRESHOLD``.
      relative_shift: per other kind, its shift relative to the native shift.
      pearson_linear: correlation across prompts of the native and ``A v`` propensities.
      cos_linear: cosine of ``A v`` and the native vector.
      kl: per kind, the mean next-token KL to the unsteered model on the probe prompts.
      passes: steers, a transferred vector reaches 70% of the native shift and random stays within 10%.
    """

    attribute: str
    target: str
    native_shift: float
    steers: bool
    relative_shift: Mapping[str, float]
    pearson_linear: float
    cos_linear: float
    kl: Mapping[str, float]
    passes: bool


def summary_row(attribute: str, target: str, steering: TargetSteering) -> SummaryRow:
    """:class:`SummaryRow` of one attribute steering one target."""
    native = steering.propensity("native").astype(np.float64)
    native_shift = float(native[-1].mean() - native[0].mean())
    shift = {kind: float(steering.relative_shift(kind)[-1]) for kind in VECTOR_KINDS[1:]}
    steers = native_shift > STEERS_THRESHOLD
    return SummaryRow(
        attribute=attribute, target=target, native_shift=native_shift, steers=steers, relative_shift=shift,
        pearson_linear=float(steering.pearson("transferred_linear")[-1]),
        cos_linear=steering.cosine_with_native["transferred_linear"],
        kl={kind: float(steering.cost(kind)[-1]) for kind in VECTOR_KINDS},
        passes=bool(steers and max(shift["transferred_linear"], shift["transferred_affine"]) >= 0.7
                    and abs(shift["random"]) <= 0.1),
    )


def summary_rows(result: LRTResult) -> list[SummaryRow]:
    """One :class:`SummaryRow` per attribute × target."""
    return [summary_row(attribute, name, steering) for attribute, data in result.attributes.items()
            for name, steering in data.targets.items()]


def format_table(rows: list[SummaryRow]) -> str:
    """A Markdown table of :func:`summary_rows` (also readable in a terminal)."""
    header = ("| attribute | target | native Δ (nats) | A v | A v + b | random | unmapped | r(native, A v) "
              "| cos(native, A v) | ≥70% & random ≤10% | KL at max α |")
    lines = [header, "|" + "---|" * 11]
    for row in rows:
        verdict = "yes" if row.passes else ("no" if row.steers else "native does not steer")
        # A ratio over a native shift below the threshold is noise over noise (it read 575% or -880%).
        shares = [_pct(row.relative_shift[kind]) if row.steers else "—" for kind in VECTOR_KINDS[1:]]
        lines.append(
            f"| {row.attribute} | {row.target} | {row.native_shift:.2f} | " + " | ".join(shares)
            + f" | {row.pearson_linear:.2f} | {row.cos_linear:.2f} | {verdict} | {_kl(row.kl['native'])} |"
        )
    lines += ["", "KL at max α: the native vector's mean next-token KL(steered ‖ unsteered) on the probe prompts "
              "(nats), how far that steering moves the model's predictions."]
    if not all(row.steers for row in rows):
        lines += ["", f"— : the native vector moves the propensity by less than {STEERS_THRESHOLD:g} nats there, so "
                  "shares of its shift would be ratios of noise and are not shown."]
    return "\n".join(lines)


def _kl(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def new_figure(size):
    """A figure that draws to files without touching pyplot's global backend (notebooks keep inline plots)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: Path) -> None:
    """Write ``figure`` as a PNG at ``path`` atomically (a reader never sees half a file)."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")


def plot_attribute(attribute: str, result: AttributeResult, alphas, path: Path) -> None:
    """Mean propensity ± s.e. vs α for every vector kind, one panel per target model."""
    targets = result.targets
    fig = new_figure((4.2 * (len(targets) + 1), 3.4))
    axes = fig.subplots(1, len(targets) + 1, squeeze=False)
    panels = [("source (native)", {"native": result.source_propensity()})]
    panels += [(name, {kind: data.propensity(kind) for kind in VECTOR_KINDS}) for name, data in targets.items()]
    for ax, (title, curves) in zip(axes[0], panels):
        for kind, values in curves.items():
            mean, se = values.mean(axis=1), values.std(axis=1, ddof=1) / np.sqrt(values.shape[1])
            color, style = KIND_STYLE[kind]
            ax.plot(alphas, mean, style, color=color, label=kind.replace("transferred_", "transferred "))
            ax.fill_between(alphas, mean - se, mean + se, color=color, alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("α (× mean residual norm)")
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0][0].set_ylabel(f"propensity: log p({result.positive_value}) − log p({result.negative_value})")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Steering '{attribute}' — native vs transferred")
    fig.tight_layout()
    save_figure(fig, path)


def plot_r2(result: LRTResult, path: Path) -> None:
    """Heatmap of the held-out R² of every source × target layer, one panel per target, the steering pair boxed."""
    fig = new_figure((3.6 * len(result.maps) + 0.8, 3.4))
    fig.set_layout_engine("constrained")  # room for the colorbar and the labels
    axes = fig.subplots(1, len(result.maps), squeeze=False)[0]
    for ax, (name, maps) in zip(axes, result.maps.items()):
        image = ax.imshow(maps.r2, vmin=min(0.0, float(np.nanmin(maps.r2))), vmax=1.0, cmap="viridis",
                          origin="lower", aspect="auto")
        for (i, j), value in np.ndenumerate(maps.r2):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 else "white")
        ax.add_patch(_box(*maps.steering_pair))
        ax.set_xticks(range(maps.r2.shape[1]))
        ax.set_yticks(range(maps.r2.shape[0]))
        ax.set_xlabel(f"{name} layer (target)")
        ax.set_ylabel("source layer")
        ax.set_title(f"{result.source} → {result.targets[name]}", fontsize=9)
    fig.colorbar(image, ax=list(axes), label="held-out R²")
    fig.suptitle("ridge map fit per layer pair (steering pair boxed)", fontsize=10)
    save_figure(fig, path)


def _box(row: int, column: int):
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)


def r2_markdown(result: LRTResult) -> list[str]:
    """Per target, a Markdown table of the R² matrix (rows: source layers, columns: target layers)."""
    lines = []
    for name, maps in result.maps.items():
        n_source, n_target = maps.r2.shape
        lines += [f"**{name}** (`{result.targets[name]}`), steering pair {maps.steering_pair[0]} → "
                  f"{maps.steering_pair[1]}:", "",
                  "| source ↓ target → | " + " | ".join(str(j) for j in range(n_target)) + " |",
                  "|" + "---|" * (n_target + 1)]
        lines += [f"| {i} | " + " | ".join(f"{value:.3f}" for value in maps.r2[i]) + " |" for i in range(n_source)]
        lines.append("")
    return lines


def write_report(result: LRTResult, out_dir: Path) -> str:
    """Write the files of the module docstring into ``out_dir``; returns the summary table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(result)
    write_json_atomic(out_dir / "results.json", {**result.to_dict(), "summary": [dataclasses.asdict(r) for r in rows]})
    result.scores().to_json(out_dir / "scores.json")
    result.comparisons().to_json(out_dir / "comparison.json")
    alphas = np.asarray(result.config.alphas)
    for attribute, data in result.attributes.items():
        plot_attribute(attribute, data, alphas, out_dir / f"steering_{attribute}.png")
    plot_r2(result, out_dir / "r2_layer_pairs.png")
    table = format_table(rows)
    steered = [(a, t, d) for a, r in result.attributes.items() for t, d in r.targets.items()]
    generation = [f"- {a} → {t}: " + ", ".join(f"{k} {_pct(v)}" for k, v in d.generated_positive_share.items())
                  + f" (unsteered {_pct(d.generated_positive_share_unsteered)})" for a, t, d in steered]
    cost_lines = [f"- {a} → {t}: " + ", ".join(f"{k} {_kl(float(d.cost(k)[-1]))}" for k in VECTOR_KINDS)
                  for a, t, d in steered]
    report = "\n".join([
        "# LRT experiment report", "",
        f"Source model: `{result.source}`; targets: "
        + ", ".join(f"`{k}` = `{v}`" for k, v in result.targets.items()) + ".", "",
        "## Map fit (held-out R² of every layer pair)", "", *r2_markdown(result),
        "![R² per layer pair](r2_layer_pairs.png)", "",
        f"## Steering at α = {alphas[-1]:g} × residual norm", "",
        "Shifts of the other vectors are relative to the native vector's shift in the same model.", "",
        table, "",
        f"Mean next-token KL(steered ‖ unsteered) on the probe prompts at α = {alphas[-1]:g} (nats):", "",
        *cost_lines, "",
        f"## Share of '+' attribute words in sampled generations steered at α = "
        f"{result.config.generation_alpha:g}", "", *generation, "",
        *[f"![{a}](steering_{a}.png)" for a in result.attributes], "",
        "Per-prompt scores: `scores.json`; per-α Pearson, MSE and slopes: `comparison.json`.", "",
    ])
    write_text_atomic(out_dir / "report.md", report)
    return table
