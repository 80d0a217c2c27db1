"""The LRT experiment's results: frozen dataclasses over tidy :class:`~lrt_jax.results.ResultsTable` scores.

::

    LRTResult
    ├── config: LRTConfig, source / targets: model names
    ├── maps: {target: LayerMaps}             R² and CKA of every layer pair (lrt_jax.lrt.maps)
    └── attributes: {attribute: AttributeResult}
        ├── source_scores: ResultsTable        the source model steered by its own vector
        └── targets: {target: TargetSteering}
            ├── scores: ResultsTable           one row per vector kind × α × probe prompt × metric
            ├── comparison: ResultsTable       evaluation.lrt_comparison of scores (Pearson, MSE, slopes)
            └── cosines, generated word shares

Score rows have ``task`` = the attribute, ``model`` = the steered model's name,
``vector`` ∈ :data:`VECTOR_KINDS`, ``item`` = the probe prompt, and ``metric``
``"propensity"`` (log-probability margin of the "+" over the "−" answer words) or
``"kl_next_token"`` (the cost: mean next-token KL to the unsteered model). The
``random`` rows are the mean over the experiment's random controls. Scores are
float32 measurements; the accessors return them as float32 arrays, so every derived
number is computed exactly as from the scorer's own arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from lrt_jax.results import ResultsTable

VECTOR_KINDS = ("native", "transferred_linear", "transferred_affine", "random", "unmapped")  # in reports
PROPENSITY, COST = "propensity", "kl_next_token"


def relative_shift(propensity: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[n_alphas]``: mean propensity change from α=0 relative to the reference vector's change."""
    change = propensity.mean(axis=-1) - propensity[0].mean()
    reference_change = reference.mean(axis=-1) - reference[0].mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(reference_change) > 1e-9, change / reference_change, np.nan)


def _grid(table: ResultsTable, kind: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    alphas, values = table.propensity_matrix(vector=kind, metric=metric)
    return alphas.astype(np.float32), values.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TargetSteering:
    """One attribute's vectors steering one target model.

    Attributes:
      model: the target model's name (the ``model`` column of ``scores``).
      site: where the vectors were added, e.g. ``"layers.2.resid_post"``.
      scores: propensity and cost rows (module docstring).
      comparison: :func:`lrt_jax.evaluation.lrt_comparison` of the propensities against ``native``.
      cosine_with_native: per transferred kind, its cosine with the native vector.
      generation_alpha: the strength of the steered generations.
      generated_positive_share: per kind, the share of "+" words among the attribute words generated.
      generated_positive_share_unsteered: the same share without steering.
    """

    model: str
    site: str
    scores: ResultsTable
    comparison: ResultsTable
    cosine_with_native: Mapping[str, float]
    generation_alpha: float
    generated_positive_share: Mapping[str, float]
    generated_positive_share_unsteered: float

    def alphas(self) -> np.ndarray:
        """``[n_alphas]`` float32, ascending."""
        return _grid(self.scores, "native", PROPENSITY)[0]

    def propensity(self, kind: str) -> np.ndarray:
        """``[n_alphas, n_prompts]`` float32 propensity under vector ``kind``."""
        return _grid(self.scores, kind, PROPENSITY)[1]

    def cost(self, kind: str) -> np.ndarray:
        """``[n_alphas]``: mean over prompts of the next-token KL to the unsteered model."""
        return _grid(self.scores, kind, COST)[1].mean(axis=-1)

    def relative_shift(self, kind: str) -> np.ndarray:
        """``[n_alphas]`` (see :func:`relative_shift`; NaN at α = 0)."""
        return relative_shift(self.propensity(kind), self.propensity("native"))

    def pearson(self, kind: str) -> np.ndarray:
        """``[n_alphas]`` Pearson correlation across prompts with the native propensities."""
        return self.comparison.propensity_matrix(vector=kind, metric="pearson")[1][:, 0]

    def mse(self, kind: str) -> np.ndarray:
        """``[n_alphas]`` mean squared difference from the native propensities."""
        return self.comparison.propensity_matrix(vector=kind, metric="mse")[1][:, 0]

    def slope(self, kind: str) -> float:
        """Steerability slope of the mean propensity against α."""
        (row,) = self.comparison.select(vector=kind, metric="slope").records
        return row.value

    def to_dict(self) -> dict:
        """JSON-ready summary per kind (the per-prompt values are in ``scores``)."""
        compared = VECTOR_KINDS[1:]
        return {
            "model": self.model, "site": self.site, "cosine_with_native": dict(self.cosine_with_native),
            "relative_shift": {kind: self.relative_shift(kind).tolist() for kind in VECTOR_KINDS},
            "pearson": {kind: self.pearson(kind).tolist() for kind in compared},
            "mse": {kind: self.mse(kind).tolist() for kind in compared},
            "slope": {kind: self.slope(kind) for kind in VECTOR_KINDS},
            "cost": {kind: self.cost(kind).tolist() for kind in VECTOR_KINDS},
            "generation_alpha": self.generation_alpha,
            "generated_positive_share": dict(self.generated_positive_share),
            "generated_positive_share_unsteered": self.generated_positive_share_unsteered,
        }


@dataclasses.dataclass(frozen=True)
class AttributeResult:
    """One attribute: its contrast, the source model steered natively, and every target.

    Attributes:
      positive_value, negative_value: the attribute values contrasted (e.g. ``"positive"``, ``"negative"``).
      source_model, source_site: where the source vector was estimated and added.
      source_scores: the source model's propensity rows under its own vector (``vector="native"``).
      targets: per target name (as in ``LRTConfig.target_layers``), its :class:`TargetSteering`.
    """

    positive_value: str
    negative_value: str
    source_model: str
    source_site: str
    source_scores: ResultsTable
    targets: Mapping[str, TargetSteering]

    def source_propensity(self) -> np.ndarray:
        """``[n_alphas, n_prompts]`` float32."""
        return _grid(self.source_scores, "native", PROPENSITY)[1]

    def to_dict(self) -> dict:
        return {"positive_value": self.positive_value, "negative_value": self.negative_value,
                "source": {"model": self.source_model, "site": self.source_site},
                "targets": {name: target.to_dict() for name, target in self.targets.items()}}


@dataclasses.dataclass(frozen=True)
class LRTResult:
    """Everything :func:`~lrt_jax.lrt.run_lrt_experiment` measured (module docstring).

    Attributes:
      config: the :class:`~lrt_jax.lrt.LRTConfig` it ran.
      source: the source model's name.
      targets: per target name, the model's name.
      maps: per target name, the :class:`~lrt_jax.lrt.maps.LayerMaps` of every layer pair.
      attributes: per attribute, its :class:`AttributeResult`.
      wall_seconds: how long the run took, when the caller timed it.
    """

    config: object
    source: str
    targets: Mapping[str, str]
    maps: Mapping[str, object]
    attributes: Mapping[str, AttributeResult]
    wall_seconds: float | None = None

    def scores(self) -> ResultsTable:
        """All score rows, source and targets, as one tidy table."""
        records = [record for attribute in self.attributes.values()
                   for table in (attribute.source_scores, *(t.scores for t in attribute.targets.values()))
                   for record in table.records]
        return ResultsTable(tuple(records))

    def comparisons(self) -> ResultsTable:
        """All comparison rows (Pearson, MSE, slopes against native) as one tidy table."""
        return ResultsTable(tuple(record for attribute in self.attributes.values()
                                  for target in attribute.targets.values() for record in target.comparison.records))

    def to_dict(self) -> dict:
        """JSON-ready: config, names, per-target R²/CKA matrices and per-attribute summaries."""
        return {"config": dataclasses.asdict(self.config), "source": self.source, "targets": dict(self.targets),
                "maps": {name: maps.to_dict() for name, maps in self.maps.items()},
                "attributes": {name: attribute.to_dict() for name, attribute in self.attributes.items()},
                "wall_seconds": self.wall_seconds}
