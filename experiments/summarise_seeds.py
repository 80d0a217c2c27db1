"""Summarise one knowledge-transfer experiment over several seeds: mean and range of every score.

The experiment scripts (``latent_semantic_alignment.py``, ``trajectory_distillation.py``)
write one JSON per run; runs differ by ``--seed``. This reads the runs of one
experiment and one teacher → student pair and, for every accuracy they report
(``after`` per method, and per student layer where there is one; the teacher and the
untrained student), gives the mean, the minimum and the maximum over the seeds. It
writes ``<out>.json`` and ``<out>.png`` (one panel per split; bars are means, whiskers
the range) and prints a table.

    python experiments/summarise_seeds.py experiments/results/latent_semantic_alignment.json \\
        experiments/results/latent_semantic_alignment.large_long_to_small.seed*.json \\
        --out experiments/results/latent_semantic_alignment.seeds
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# Diagnostics of the optimisation and the layer pairing, not scores.
_SKIPPED_KEYS = {"final_loss", "first_loss", "pairing"}
# Per-run scores outside ``after`` (the references every method is compared with).
_REFERENCE_KEYS = ("teacher", "teacher_chain_of_thought", "teacher_direct", "student_before")


def flatten_scores(tree, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], float]:
    """``{path: value}`` for the numeric leaves of ``tree``; None (no items) is skipped."""
    scores = {}
    for key, value in tree.items():
        if key in _SKIPPED_KEYS or value is None:
            continue
        path = (*prefix, str(key))
        if isinstance(value, dict):
            scores.update(flatten_scores(value, path))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            scores[path] = float(value)
    return scores


def run_scores(run: dict) -> dict[tuple[str, ...], float]:
    """Every score of one run: the references and ``after``."""
    tree = {key: run[key] for key in _REFERENCE_KEYS if key in run}
    tree["after"] = run["after"]
    return flatten_scores(tree)


def summarise(runs: list[dict]) -> dict:
    """Mean, min and max over ``runs`` of every score present in all of them.

    Raises:
        ValueError: the runs are of different experiments or teacher → student
            pairs, or two runs share a seed.
    """
    if not runs:
        raise ValueError("no runs given; pass the JSON files of one experiment's seeds.")
    identity = {(run["experiment"], run["teacher_model"], run["student_model"]) for run in runs}
    if len(identity) != 1:
        raise ValueError(f"the runs mix experiments or teacher → student pairs: {sorted(identity)};"
                         " summarise one experiment and one pair at a time.")
    seeds = [run["args"]["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two runs have the same seed ({seeds}); pass each seed's file once.")
    per_run = [run_scores(run) for run in runs]
    common = [path for path in per_run[0] if all(path in scores for scores in per_run[1:])]
    rows = []
    for path in common:
        values = [scores[path] for scores in per_run]
        rows.append({"score": "/".join(path), "mean": math.fsum(values) / len(values),
                     "min": min(values), "max": max(values), "values": values})
    experiment, teacher, student = identity.pop()
    return {"experiment": experiment, "teacher_model": teacher, "student_model": student,
            "seeds": seeds, "scores": rows}


def print_table(summary: dict) -> None:
    print(f"{summary['experiment']}: {summary['teacher_model']} → {summary['student_model']},"
          f" seeds {summary['seeds']}")
    width = max(len(row["score"]) for row in summary["scores"])
    for row in summary["scores"]:
        values = " ".join(f"{value:.2f}" for value in row["values"])
        print(f"  {row['score']:{width}s}  mean {row['mean']:.3f}  range [{row['min']:.2f},"
              f" {row['max']:.2f}]  ({values})")


def _bar_label(score: str) -> str:
    """``after/2/no_transfer/train`` → ``layer 2 · no_transfer``; ``after/no_transfer/test`` → ``no_transfer``."""
    parts = score.split("/")[1:-1]
    if parts and parts[0].isdigit():
        return f"layer {parts[0]} · " + " · ".join(parts[1:])
    return " · ".join(parts)


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[dict]] = {}
    for row in summary["scores"]:
        if row["score"].startswith("after/"):
            panels.setdefault(row["score"].rsplit("/", 1)[1], []).append(row)
    references = {row["score"]: row["mean"] for row in summary["scores"]
                  if not row["score"].startswith("after/")}
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False, sharey=True)
    for axis, (split, rows) in zip(axes[0], panels.items()):
        labels = [_bar_label(row["score"]) for row in rows]
        means = [row["mean"] for row in rows]
        # Clipped at 0: the mean of equal values can differ from them in the last bit.
        errors = [[max(0.0, row["mean"] - row["min"]) for row in rows],
                  [max(0.0, row["max"] - row["mean"]) for row in rows]]
        axis.barh(labels, means, xerr=errors, color="tab:blue", capsize=3)
        for reference, style in (("student_before", "--"), ("teacher", ":"),
                                 ("teacher_chain_of_thought", ":")):
            value = references.get(f"{reference}/{split}")
            if value is not None:
                axis.axvline(value, color="black" if reference == "student_before" else "tab:red",
                             linestyle=style, label=f"{reference.replace('_', ' ')} (mean)")
        axis.set_title(split.replace("_", " "))
        axis.set_xlabel(f"accuracy (mean, range over {len(summary['seeds'])} seeds)")
        axis.set_xlim(0, 1)
    axes[0][0].invert_yaxis()  # once: the panels share the y axis
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize="small")
    fig.suptitle(f"{summary['experiment'].replace('_', ' ')}: {summary['teacher_model']} →"
                 f" {summary['student_model']}")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="result JSON files of one experiment, one per seed")
    parser.add_argument("--out", required=True, help="output path without suffix")
    args = parser.parse_args()
    missing = [path for path in args.runs if not Path(path).is_file()]
    if missing:
        raise SystemExit(f"no such result file: {', '.join(missing)}")
    summary = summarise([json.loads(Path(path).read_text()) for path in args.runs])
    summary["files"] = [Path(path).name for path in args.runs]
    print_table(summary)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(summary, indent=2))
    plot(summary, args.out + ".png")
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
