"""Tidy result tables: one row per item × α × vector, exported as JSON or CSV and plotted.

Scorers emit :class:`ResultRecord` rows in long ("tidy") form, so any grouping or
pivot is a filter over rows rather than a new nested structure:

====== =====================================================================
column meaning
====== =====================================================================
task   dataset or task name, e.g. ``"caa/refusal"``
model  the model that was steered
vector which steering vector (``"native"``, ``"transferred"``, ``"random"``, …)
alpha  steering strength
item   item index within the task (0-based)
metric what ``value`` measures, e.g. ``"p_matching"`` or ``"logit_diff"``
value  the measurement
====== =====================================================================

:meth:`ResultsTable.propensity_matrix` turns one vector's rows into the
``[n_alphas, n_items]`` arrays :func:`lrt_jax.steering.compare_propensities` takes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
from collections import defaultdict

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lrt_jax.outputs import atomic_path, write_records_csv, write_json_atomic


@dataclasses.dataclass(frozen=True)
class ResultRecord:
    """One measurement: a task item scored under one vector at one strength (see the module table)."""

    task: str
    model: str
    vector: str
    alpha: float
    item: int
    metric: str
    value: float


COLUMNS = tuple(field.name for field in dataclasses.fields(ResultRecord))
_COLUMN_TYPES = {field.name: field.type for field in dataclasses.fields(ResultRecord)}
def _float_or_nan(value) -> float:
    # Strict JSON stores a non-finite value as null (lrt_jax.outputs); read it back as NaN.
    return float("nan") if value is None else float(value)


_PARSERS = {"str": str, "float": _float_or_nan, "int": int}


def _record_from_strings(row: dict, source: str) -> ResultRecord:
    if set(row) != set(COLUMNS):
        raise ValueError(f"{source}: columns {sorted(row)} differ from the expected {list(COLUMNS)}.")
    return ResultRecord(**{name: _PARSERS[_COLUMN_TYPES[name]](row[name]) for name in COLUMNS})


@dataclasses.dataclass(frozen=True)
class ResultsTable:
    """An immutable sequence of :class:`ResultRecord` rows with export and reshaping helpers."""

    records: tuple[ResultRecord, ...]

    def __len__(self) -> int:
        return len(self.records)

    def select(self, **equal_to) -> "ResultsTable":
        """Rows whose columns equal the given values, e.g. ``table.select(vector="native")``."""
        unknown = set(equal_to) - set(COLUMNS)
        if unknown:
            raise ValueError(f"Unknown columns {sorted(unknown)}; columns are {list(COLUMNS)}.")
        kept = [r for r in self.records if all(getattr(r, k) == v for k, v in equal_to.items())]
        return ResultsTable(tuple(kept))

    def to_json(self, path) -> None:
        """Write ``{"columns": [...], "rows": [{column: value}, ...]}`` (strict JSON: NaN → ``null``), atomically."""
        rows = [dataclasses.asdict(record) for record in self.records]
        write_json_atomic(path, {"columns": list(COLUMNS), "rows": rows}, indent=1)

    @classmethod
    def from_json(cls, path) -> "ResultsTable":
        """Read a table written by :meth:`to_json`."""
        rows = json.loads(pathlib.Path(path).read_text())["rows"]
        return cls(tuple(_record_from_strings(row, str(path)) for row in rows))

    def to_csv(self, path) -> None:
        """Write a header line and one line per record (floats keep full precision)."""
        write_records_csv(path, self.records, COLUMNS)

    @classmethod
    def from_csv(cls, path) -> "ResultsTable":
        """Read a table written by :meth:`to_csv`."""
        with pathlib.Path(path).open(newline="") as file:
            return cls(tuple(_record_from_strings(row, str(path)) for row in csv.DictReader(file)))

    def propensity_matrix(self, *, vector: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """One vector's values as a complete α × item grid.

        Returns:
          ``(alphas [n_alphas], values [n_alphas, n_items])`` with alphas ascending
          and items in ascending index order.

        Raises:
          ValueError: when some (α, item) cell is missing or appears twice (e.g.
            rows of several tasks or models mixed; :meth:`select` them first).
        """
        rows = self.select(vector=vector, metric=metric).records
        if not rows:
            raise ValueError(f"No rows with vector={vector!r} and metric={metric!r}.")
        alphas = sorted({r.alpha for r in rows})
        items = sorted({r.item for r in rows})
        cells = defaultdict(list)
        for r in rows:
            cells[(r.alpha, r.item)].append(r.value)
        incomplete = [key for key in ((a, i) for a in alphas for i in items) if len(cells[key]) != 1]
        if incomplete:
            raise ValueError(
                f"{len(incomplete)} (alpha, item) cells have no value or several, e.g. {incomplete[0]}; "
                "select a single task and model so that each cell is scored once."
            )
        values = np.array([[cells[(a, i)][0] for i in items] for a in alphas])
        return np.array(alphas), values


def plot_propensity_vs_alpha(table: ResultsTable, path, *, group_by: str = "vector", metric: str | None = None) -> None:
    """Plot the mean value ± standard error across items against α, one line per group.

    Args:
      table: the results; rows of one metric are plotted.
      path: image file to write (format from the suffix, e.g. ``.png``, ``.pdf``).
      group_by: the column whose values become separate lines.
      metric: which metric to plot; may be omitted when the table holds only one.
    """
    if group_by not in COLUMNS:
        raise ValueError(f"group_by={group_by!r} is not a column; columns are {list(COLUMNS)}.")
    metrics = sorted({r.metric for r in table.records})
    if metric is None and len(metrics) != 1:
        raise ValueError(f"The table holds metrics {metrics}; pass metric= to choose one.")
    metric = metric if metric is not None else metrics[0]
    rows = table.select(metric=metric).records
    if not rows:
        raise ValueError(f"No rows with metric={metric!r}.")

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)  # Attaches a non-interactive canvas; no pyplot global state.
    axes = figure.add_subplot()
    for group in sorted({getattr(r, group_by) for r in rows}, key=str):
        by_alpha = defaultdict(list)
        for r in rows:
            if getattr(r, group_by) == group:
                by_alpha[r.alpha].append(r.value)
        alphas = sorted(by_alpha)
        means = np.array([np.mean(by_alpha[a]) for a in alphas])
        errors = np.array([_standard_error(by_alpha[a]) for a in alphas])
        axes.plot(alphas, means, marker="o", label=str(group))
        axes.fill_between(alphas, means - errors, means + errors, alpha=0.2)
    axes.set_xlabel("steering strength α")
    axes.set_ylabel(f"{metric} (mean ± s.e. over items)")
    axes.legend(title=group_by)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=pathlib.Path(path).suffix.lstrip(".") or None)


def _standard_error(values) -> float:
    # One item has no spread to estimate; draw no band rather than NaN.
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
