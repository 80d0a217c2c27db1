"""Writing an LRT experiment's results: JSON, a plot per attribute, a Markdown report, a summary table.

The headline numbers per attribute and target model are taken at the largest α:
the native vector's propensity shift (nats), each other vector's shift relative to
it, the native-vs-``A v`` correlation across prompts, and the cosine between ``A v``
and the native vector. An attribute *steers* when the native shift exceeds
``STEERS_THRESHOLD`` nats; the acceptance check (transferred ≥ 70% of native, random
≤ 10%) is reported for those.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lrt_jax.lrt.experiment import VECTOR_KINDS
from lrt_jax.outputs import atomic_path, write_json_atomic, write_text_atomic

STEERS_THRESHOLD = 1.0
KIND_STYLE = {
    "native": ("tab:blue", "-"),
    "transferred_linear": ("tab:orange", "-"),
    "transferred_affine": ("tab:green", "-"),
    "random": ("tab:gray", "--"),
    "unmapped": ("tab:red", "--"),
}


def summary_rows(results: dict) -> list[dict]:
    """One row per attribute × target with the headline numbers at the largest α."""
    rows = []
    for attribute, result in results["attributes"].items():
        for target, data in result["targets"].items():
            native = np.asarray(data["propensity"]["native"])
            native_shift = float(native[-1].mean() - native[0].mean())
            shift = {kind: data["relative_shift"][kind][-1] for kind in VECTOR_KINDS[1:]}
            steers = native_shift > STEERS_THRESHOLD
            rows.append({
                "attribute": attribute, "target": target, "native_shift": native_shift, "steers": steers,
                **{f"rel_{kind}": value for kind, value in shift.items()},
                "pearson_linear": data["pearson"]["transferred_linear"][-1],
                "cos_linear": data["cosine_with_native"]["transferred_linear"],
                # Mean next-token KL to the unsteered model on the probe prompts (absent in older results).
                **({f"kl_{kind}": data["cost"][kind][-1] for kind in VECTOR_KINDS} if "cost" in data else {}),
                "passes": bool(steers and max(shift["transferred_linear"], shift["transferred_affine"]) >= 0.7
                               and abs(shift["random"]) <= 0.1),
            })
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`summary_rows` (also readable in a terminal)."""
    header = ("| attribute | target | native Δ (nats) | A v | A v + b | random | unmapped | r(native, A v) "
              "| cos(native, A v) | ≥70% & random ≤10% | KL at max α |")
    lines = [header, "|" + "---|" * 11]
    for row in rows:
        verdict = "yes" if row["passes"] else ("no" if row["steers"] else "native does not steer")
        # A ratio over a native shift below the threshold is noise over noise (it read 575% or -880%).
        shares = [_pct(row[f"rel_{kind}"]) if row["steers"] else "—" for kind in VECTOR_KINDS[1:]]
        lines.append(
            f"| {row['attribute']} | {row['target']} | {row['native_shift']:.2f} | " + " | ".join(shares)
            + f" | {row['pearson_linear']:.2f} | {row['cos_linear']:.2f} | {verdict} | {_kl(row.get('kl_native'))} |"
        )
    lines += ["", "KL at max α: the native vector's mean next-token KL(steered ‖ unsteered) on the probe prompts "
              "(nats), how far that steering moves the model's predictions."]
    if not all(row["steers"] for row in rows):
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


def plot_attribute(attribute: str, result: dict, alphas, path: Path) -> None:
    """Mean propensity ± s.e. vs α for every vector kind, one panel per target model; returns the figure."""
    targets = result["targets"]
    fig = new_figure((4.2 * (len(targets) + 1), 3.4))
    axes = fig.subplots(1, len(targets) + 1, squeeze=False)
    panels = [("source (native)", {"native": result["source"]["propensity"]})]
    panels += [(name, data["propensity"]) for name, data in targets.items()]
    for ax, (title, curves) in zip(axes[0], panels):
        for kind, values in curves.items():
            values = np.asarray(values if np.ndim(values) == 2 else [values])
            values = values.reshape(len(alphas), -1)
            mean, se = values.mean(axis=1), values.std(axis=1, ddof=1) / np.sqrt(values.shape[1])
            color, style = KIND_STYLE[kind]
            ax.plot(alphas, mean, style, color=color, label=kind.replace("transferred_", "transferred "))
            ax.fill_between(alphas, mean - se, mean + se, color=color, alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("α (× mean residual norm)")
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0][0].set_ylabel(f"propensity: log p({result['positive_value']}) − log p({result['negative_value']})")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Steering '{attribute}' — native vs transferred")
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    return fig


def plot_r2(results: dict, path: Path) -> None:
    """Held-out R² of every fitted layer pair, one bar group per target model."""
    fig = new_figure((6, 3.2))
    ax = fig.add_subplot()
    offset = 0
    for name, pairs in results["r2"].items():
        xs = np.arange(len(pairs)) + offset
        ax.bar(xs, list(pairs.values()), label=name)
        for x, label in zip(xs, pairs):
            ax.text(x, 0.02, label, rotation=90, ha="center", va="bottom", fontsize=7, color="white")
        offset += len(pairs) + 1
    ax.set_ylabel("held-out R²")
    ax.set_xticks([])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("ridge map fit per layer pair (source → target)")
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")


def write_report(results: dict, out_dir: Path) -> str:
    """Write ``results.json`` (with summary rows), PNGs and ``report.md``; returns the summary table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(results)
    write_json_atomic(out_dir / "results.json", {**results, "summary": rows})
    alphas = np.asarray(results["config"]["alphas"])
    for attribute, result in results["attributes"].items():
        plot_attribute(attribute, result, alphas, out_dir / f"steering_{attribute}.png")
    plot_r2(results, out_dir / "r2_layer_pairs.png")
    table = format_table(rows)
    r2_lines = [f"- {name}: " + ", ".join(f"{pair} R²={value:.3f}" for pair, value in pairs.items())
                for name, pairs in results["r2"].items()]
    generation = [f"- {a} → {t}: " + ", ".join(f"{k} {_pct(v)}" for k, v in d["generated_positive_share"].items())
                  + f" (unsteered {_pct(d['generated_positive_share_unsteered'])})"
                  for a, r in results["attributes"].items() for t, d in r["targets"].items()]
    cost_lines = [f"- {a} → {t}: " + ", ".join(f"{k} {_kl(v[-1])}" for k, v in d["cost"].items())
                  for a, r in results["attributes"].items() for t, d in r["targets"].items() if "cost" in d]
    report = "\n".join([
        "# LRT experiment report", "",
        f"Source model: `{results['source']}`; targets: "
        + ", ".join(f"`{k}` = `{v}`" for k, v in results["targets"].items()) + ".", "",
        "## Map fit (held-out R²)", "", *r2_lines, "", "![R² per layer pair](r2_layer_pairs.png)", "",
        f"## Steering at α = {alphas[-1]:g} × residual norm", "",
        "Shifts of the other vectors are relative to the native vector's shift in the same model.", "",
        table, "",
        *([f"Mean next-token KL(steered ‖ unsteered) on the probe prompts at α = {alphas[-1]:g} (nats):", "",
           *cost_lines, ""] if cost_lines else []),
        f"## Share of '+' attribute words in sampled generations steered at α = "
        f"{results['config']['generation_alpha']:g}", "", *generation, "",
        *[f"![{a}](steering_{a}.png)" for a in results["attributes"]], "",
    ])
    write_text_atomic(out_dir / "report.md", report)
    return table
