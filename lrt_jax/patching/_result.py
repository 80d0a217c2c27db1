"""The patching result: grid arrays, their tidy rows, CSV/JSON export and the heatmap.

Normalised patching effect of a cell, on the batch means of a metric ``m``::

    (m_patched − m_corrupt) / (m_clean − m_corrupt)

0: the patch changes nothing; 1: it restores the clean run. For the KL to the clean
run (``m_clean = 0``) it is ``1 − KL_patched / KL_corrupt``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lrt_jax.outputs import atomic_path, write_records_csv, write_json_atomic

__all__ = ["PatchingRecord", "PatchingResult", "plot_patching_heatmap"]


@dataclasses.dataclass(frozen=True)
class PatchingRecord:
    """One grid cell under one metric (batch means); ``unit`` is a position, head or neuron index."""

    site: str
    over: str
    layer: int
    unit: int
    label: str
    metric: str
    value: float
    normalized: float


COLUMNS = tuple(field.name for field in dataclasses.fields(PatchingRecord))


@dataclasses.dataclass(frozen=True)
class PatchingResult:
    """Activation patching over ``layers × units`` of one site kind.

    Attributes:
      site: the per-layer site kind, e.g. ``"resid_pre"`` or ``"attn.z"``.
      over: ``"position"``, ``"head"`` or ``"neuron"``.
      layers: the layer of each grid row.
      labels: a label per unit (the clean row 0's tokens for positions when a tokenizer is known).
      values: ``{metric: [n_layers, n_units, batch]}`` of the patched runs.
      clean, corrupt: ``{metric: [batch]}`` of the unpatched runs.
    """

    site: str
    over: str
    layers: tuple[int, ...]
    labels: tuple[str, ...]
    values: dict
    clean: dict
    corrupt: dict

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.values)

    def _check_metric(self, metric: str) -> None:
        if metric not in self.values:
            fix = " (pass answers=(correct, wrong) for the logit difference)" if metric == "logit_diff" else ""
            raise ValueError(f"No metric {metric!r} in this result; it has {list(self.values)}{fix}.")

    def effect(self, metric: str) -> np.ndarray:
        """``[n_layers, n_units]``: the metric of each patched run, mean over the batch."""
        self._check_metric(metric)
        return np.mean(self.values[metric], axis=-1)

    def normalized(self, metric: str) -> np.ndarray:
        """``[n_layers, n_units]``: ``(patched − corrupt) / (clean − corrupt)`` on batch means.

        Raises ``ValueError`` when the clean and corrupt means are equal (0/0); the
        records then hold NaN.
        """
        self._check_metric(metric)
        clean, corrupt = float(np.mean(self.clean[metric])), float(np.mean(self.corrupt[metric]))
        if clean == corrupt:
            raise ValueError(f"The clean and corrupt runs have the same mean {metric} ({clean:.6g}), so the "
                             "normalised effect is 0/0; choose inputs (or answers) that the model tells apart.")
        return (self.effect(metric) - corrupt) / (clean - corrupt)

    def _normalized_or_nan(self, metric: str) -> np.ndarray:
        same = float(np.mean(self.clean[metric])) == float(np.mean(self.corrupt[metric]))
        return np.full_like(self.effect(metric), np.nan) if same else self.normalized(metric)

    def records(self) -> tuple[PatchingRecord, ...]:
        """Tidy rows: one per metric × layer × unit."""
        rows = []
        for metric in self.metrics:
            effect, normalized = self.effect(metric), self._normalized_or_nan(metric)
            for row, layer in enumerate(self.layers):
                for unit, label in enumerate(self.labels):
                    rows.append(PatchingRecord(self.site, self.over, layer, unit, label, metric,
                                               float(effect[row, unit]), float(normalized[row, unit])))
        return tuple(rows)

    def to_csv(self, path) -> None:
        """A header line and one line per record (see :class:`PatchingRecord`), written atomically."""
        write_records_csv(path, self.records(), COLUMNS)

    def to_json(self, path) -> None:
        """``{"columns", "rows", "clean", "corrupt"}`` (batch means of the unpatched runs), strict JSON."""
        write_json_atomic(path, {
            "columns": list(COLUMNS), "rows": [dataclasses.asdict(record) for record in self.records()],
            "clean": {m: float(np.mean(v)) for m, v in self.clean.items()},
            "corrupt": {m: float(np.mean(v)) for m, v in self.corrupt.items()},
        }, indent=1)


def plot_patching_heatmap(result: PatchingResult, path=None, *, metric: str | None = None, normalized: bool = True,
                          axes=None):
    """Layers × units heatmap of one metric; returns the figure (also written to ``path`` when given).

    Args:
      result: from :func:`~lrt_jax.patching.activation_patching`.
      path: image file to write (format from the suffix), or ``None``.
      metric: ``"logit_diff"`` or ``"kl"``; default the logit difference when present.
      normalized: plot the normalised effect (0 = corrupt, 1 = clean) rather than the raw metric.
      axes: a matplotlib ``Axes`` to draw into (e.g. from ``plt.subplots``); default a new figure.
    """
    metric = metric or ("logit_diff" if "logit_diff" in result.values else "kl")
    grid = result.normalized(metric) if normalized else result.effect(metric)
    if axes is None:
        label_room = 0.09 * max(len(label) for label in result.labels) if result.over == "position" else 0.0
        figure = Figure(figsize=(max(4.0, 0.4 * len(result.labels) + 2.0), 0.4 * len(result.layers) + 1.8 + label_room))
        FigureCanvasAgg(figure)  # a non-interactive canvas; no pyplot global state
        axes = figure.add_subplot()
    figure = axes.figure
    limit = max(float(np.max(np.abs(grid))), 1e-12)
    image = axes.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    axes.set_xticks(range(len(result.labels)), result.labels, rotation=90 if result.over == "position" else 0)
    axes.set_yticks(range(len(result.layers)), [str(layer) for layer in result.layers])
    axes.set_xlabel(result.over)
    axes.set_ylabel("layer")
    axes.set_title(f"patching {result.site}: {'normalised ' if normalized else ''}{metric}")
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02)
    figure.tight_layout()
    if path is not None:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or None)
    return figure
