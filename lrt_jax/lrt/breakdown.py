"""Where affine transfer breaks: steering preservation per factor of an organism zoo, with intervals.

The demo's pair (``small`` → ``large``: one corpus, one tokenizer, one family, width ×2)
transfers almost perfectly. The zoo (:data:`ZOO`) varies one factor at a time from it —
the initialisation seed, the family, the scale, the training corpus and the tokenizer — and
:func:`lrt_jax.lrt.run_lrt_experiment` steers every target with its native CAA vector,
the source vector carried through the ridge map (``A v`` and ``A v + b``) and two
controls (random vectors of the native norm; the source vector zero-padded or cut,
``unmapped``). From its per-prompt propensities this module computes, per target,
attribute and vector kind, at one strength ``α``:

* ``preservation`` — the mean propensity shift ``P(α) − P(0)`` over the native vector's
  (the relative shift of :func:`lrt_jax.lrt.relative_shift`; 1 = as strong as native);
* ``prompt_pearson`` — the Pearson correlation across prompts of the steered propensities
  ``P_kind(α)`` with ``P_native(α)`` (the LRT paper's per-prompt agreement; it includes each
  prompt's unsteered propensity, so it is high whenever steering is weak);
* ``shift_pearson`` — the correlation across prompts of the *shifts* ``P(α) − P(0)``, which
  asks whether the transferred vector moves the same prompts as much as the native one.

Every score has a percentile bootstrap interval over probe prompts (one ``vmap`` over
resample index arrays, :func:`lrt_jax.evaluation.bootstrap_statistic`); ``attribute="all"``
averages the attributes' scores inside each resample. Beside them: the native vector's own
shift (``vector="native"``, ``metric="shift"``, nats, with its interval), the denominator
of every ratio — where it is small the target's own vector barely steers and the ratios
are noise — and the held-out R² of the steering layer pair's map (``metric="r2"``, no
interval).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrt_jax import evaluation
from lrt_jax.lrt.report import new_figure, save_figure
from lrt_jax.lrt.results import LRTResult, VECTOR_KINDS
from lrt_jax.outputs import write_json_atomic, write_records_csv, write_text_atomic

SCORED_KINDS = VECTOR_KINDS[1:]  # native is the reference
METRICS = ("preservation", "prompt_pearson", "shift_pearson")


@dataclasses.dataclass(frozen=True)
class Factor:
    """One zoo pair: the organism ``target`` differs from the demo's target in ``name`` only."""

    name: str
    target: str
    description: str


# Source is always ``small`` (llama, d_model 64, 4 layers, word tokenizer, base corpus).
ZOO: tuple[Factor, ...] = (
    Factor("none (demo pair)", "large", "llama ×2 width, same corpus and tokenizer"),
    Factor("seed", "large-seed1", "as large, other initialisation and data order"),
    Factor("family: mixtral", "moe", "mixtral MoE, 4 experts top-2, same width as the source (×1)"),
    Factor("family: gemma-2", "gemma2", "gemma-2 (sandwich norms, soft-caps, sliding window), ×1 width"),
    Factor("scale ×4", "xlarge", "llama ×4 width (d_model 256), same corpus and tokenizer"),
    Factor("training corpus", "large-shifted",
           "as large, trained on a shifted corpus (opinion sentences 70% not 30%, attribute values skewed "
           "4:1 and 8:4:2:1 not uniform, other documents); same tokenizer"),
    Factor("tokenizer", "large-bpe",
           "as large, reading the corpus through a 224-id BPE instead of 188 words (names and task words split, "
           "1.2 tokens per word); its maps are fitted on word-paired states"),
)


@dataclasses.dataclass(frozen=True)
class BreakdownRow:
    """One tidy score: ``value`` with its interval (``None`` where a score has none)."""

    factor: str
    target: str
    attribute: str
    vector: str
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _pearson(a, b):
    """Pearson correlation over axis 0 of ``[n, ...]`` arrays."""
    a = a - jnp.mean(a, axis=0, keepdims=True)
    b = b - jnp.mean(b, axis=0, keepdims=True)
    return jnp.sum(a * b, axis=0) / jnp.sqrt(jnp.sum(a * a, axis=0) * jnp.sum(b * b, axis=0))


def transfer_scores(native_zero, native_alpha, kind_zero, kind_alpha):
    """``[3, n_attributes + 1]``: :data:`METRICS` per attribute and their mean (last column).

    Each argument is ``[n_prompts, n_attributes]``: the propensities of the native vector
    and of the scored vector at ``α = 0`` and at the scored ``α``. Traceable.
    """
    native_shift, kind_shift = native_alpha - native_zero, kind_alpha - kind_zero
    per_attribute = jnp.stack([jnp.mean(kind_shift, axis=0) / jnp.mean(native_shift, axis=0),
                               _pearson(kind_alpha, native_alpha), _pearson(kind_shift, native_shift)])
    return jnp.concatenate([per_attribute, jnp.mean(per_attribute, axis=1, keepdims=True)], axis=1)


def native_shift(native_zero, native_alpha):
    """``[n_attributes + 1]``: the native vector's mean propensity shift (nats) per attribute and their mean.

    A transfer ratio is only as meaningful as this denominator: where the target's own
    vector barely steers, preservation and the correlations are noise. Traceable.
    """
    per_attribute = jnp.mean(native_alpha - native_zero, axis=0)
    return jnp.concatenate([per_attribute, jnp.mean(per_attribute, keepdims=True)])


def _alpha_index(alphas: np.ndarray, alpha: float) -> int:
    matches = np.flatnonzero(np.isclose(alphas, alpha))
    if not matches.size:
        raise ValueError(f"α = {alpha:g} is not one of the experiment's strengths {alphas.tolist()}; pick one of them.")
    if not np.isclose(alphas[0], 0.0):
        raise ValueError(f"the experiment's strengths {alphas.tolist()} must start at 0: shifts are measured from it.")
    return int(matches[0])


def _with_interval(statistic, arrays, indices, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``statistic(*arrays)`` and its percentile bootstrap interval over the resamples ``indices``."""
    point = np.asarray(statistic(*map(jnp.asarray, arrays)))
    draws = evaluation.bootstrap_statistic(statistic, arrays, indices)
    low, high = (np.asarray(q) for q in evaluation.percentile_interval(draws, confidence))
    return point, low, high


def breakdown_rows(result: LRTResult, factors: Mapping[str, str], *, alpha: float, n_resamples: int = 1000,
                   confidence: float = 0.95, seed: int = 0) -> list[BreakdownRow]:
    """Tidy rows of the module docstring for every target of ``result``.

    Args:
      result: an LRT experiment over the zoo's targets (one source).
      factors: target name (as in ``result.targets``) → the factor it varies.
      alpha: the strength scored (one of ``result.config.alphas``).
      n_resamples, confidence: the prompt bootstrap.
      seed: seeds the resamples (each target gets its own stream).
    """
    missing = sorted(set(result.targets) - set(factors))
    if missing:
        raise ValueError(f"no factor is named for targets {missing}; give factors={{target: factor}} for each.")
    attributes = list(result.attributes)
    rows: list[BreakdownRow] = []
    for index, target in enumerate(result.targets):
        steered = [result.attributes[a].targets[target] for a in attributes]
        alphas = steered[0].alphas()
        at = _alpha_index(alphas, alpha)
        sizes = {s.propensity("native").shape[1] for s in steered}
        if len(sizes) != 1:
            raise ValueError(f"the attributes of {target!r} have different numbers of probe prompts {sorted(sizes)}; "
                             "the bootstrap resamples prompts jointly, so give every attribute as many.")
        key = jax.random.fold_in(jax.random.key(seed), index)
        indices = evaluation.bootstrap_indices(key, sizes.pop(), n_resamples)
        native = np.stack([s.propensity("native") for s in steered], axis=-1)  # [n_alphas, n_prompts, n_attr]
        factor = factors[target]
        point, low, high = _with_interval(native_shift, (native[0], native[at]), indices, confidence)
        for a, attribute in enumerate([*attributes, "all"]):
            rows.append(BreakdownRow(factor, target, attribute, "native", "shift", float(point[a]), float(low[a]),
                                     float(high[a])))
        for kind in SCORED_KINDS:
            values = np.stack([s.propensity(kind) for s in steered], axis=-1)
            arrays = (native[0], native[at], values[0], values[at])
            point, low, high = _with_interval(transfer_scores, arrays, indices, confidence)
            for m, metric in enumerate(METRICS):
                for a, attribute in enumerate([*attributes, "all"]):
                    rows.append(BreakdownRow(factor, target, attribute, kind, metric, float(point[m, a]),
                                             float(low[m, a]), float(high[m, a])))
        source_layer, target_layer = result.maps[target].steering_pair
        rows.append(BreakdownRow(factor, target, "all", "map", "r2",
                                 float(result.maps[target].r2[source_layer, target_layer]), None, None))
    return rows


def _find(rows: Sequence[BreakdownRow], target: str, vector: str, metric: str, attribute: str = "all"):
    for row in rows:
        if (row.target, row.vector, row.metric, row.attribute) == (target, vector, metric, attribute):
            return row
    return None


def _cell(row: BreakdownRow | None, percent: bool) -> str:
    if row is None:
        return "—"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    if row.ci_low is None:
        return f"{scale * row.value:.2f}{unit}" if not percent else f"{scale * row.value:.0f}{unit}"
    digits = 0 if percent else 2
    return (f"{scale * row.value:.{digits}f}{unit} [{scale * row.ci_low:.{digits}f}, "
            f"{scale * row.ci_high:.{digits}f}]")


def breakdown_markdown(rows: Sequence[BreakdownRow], alpha: float) -> str:
    """Per factor: R², the native shift, preservation of each vector kind and the correlations (``A v + b``);
    then per factor × attribute: preservation and prompt correlation of ``A v``, and the native shift."""
    targets = list(dict.fromkeys(row.target for row in rows))
    header = ("| factor | target | R² | native shift (nats) | preservation A v + b | A v | random | unmapped | "
              "prompt r (A v + b) | shift r (A v + b) |")
    lines = [f"Steering at α = {alpha:g} × residual norm, mean over attributes; 95% prompt-bootstrap intervals.", "",
             header, "|" + "---|" * 10]
    for target in targets:
        factor = next(row.factor for row in rows if row.target == target)
        cells = [factor, f"`{target}`", _cell(_find(rows, target, "map", "r2"), False),
                 _cell(_find(rows, target, "native", "shift"), False),
                 *(_cell(_find(rows, target, kind, "preservation"), True)
                   for kind in ("transferred_affine", "transferred_linear", "random", "unmapped")),
                 _cell(_find(rows, target, "transferred_affine", "prompt_pearson"), False),
                 _cell(_find(rows, target, "transferred_affine", "shift_pearson"), False)]
        lines.append("| " + " | ".join(cells) + " |")
    attributes = list(dict.fromkeys(row.attribute for row in rows if row.attribute != "all"))
    if attributes:
        lines += ["", "Per attribute, `A v`: preservation · prompt r · native shift (nats).", "",
                  "| factor | " + " | ".join(attributes) + " |", "|" + "---|" * (len(attributes) + 1)]
        for target in targets:
            factor = next(row.factor for row in rows if row.target == target)
            cells = []
            for attribute in attributes:
                kept = _find(rows, target, "transferred_linear", "preservation", attribute)
                r = _find(rows, target, "transferred_linear", "prompt_pearson", attribute)
                shift = _find(rows, target, "native", "shift", attribute)
                cells.append(" · ".join(["—" if kept is None else f"{100 * kept.value:.0f}%",
                                         "—" if r is None else f"{r.value:.2f}",
                                         "—" if shift is None else f"{shift.value:.2f}"]))
            lines.append(f"| {factor} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_breakdown(rows: Sequence[BreakdownRow], path: Path) -> None:
    """Per factor: preservation (with intervals) of each vector kind and the shift correlation (means over
    attributes), and a factor × attribute map of ``A v``'s preservation annotated with the native shift."""
    targets = list(dict.fromkeys(row.target for row in rows))
    labels = [next(row.factor for row in rows if row.target == target) for target in targets]
    attributes = list(dict.fromkeys(row.attribute for row in rows if row.attribute != "all"))
    figure = new_figure((15.0, 0.55 * len(targets) + 2.2))
    grid = figure.add_gridspec(1, 3, width_ratios=(1.0, 1.0, 0.25 * max(len(attributes), 1) + 0.3))
    left, middle, right = (figure.add_subplot(grid[0, i]) for i in range(3))
    positions = np.arange(len(targets))
    styles = {"transferred_affine": ("A v + b", "C0"), "transferred_linear": ("A v", "C1"),
              "random": ("random", "C7"), "unmapped": ("unmapped", "C3")}
    for offset, (kind, (label, colour)) in zip(np.linspace(-0.27, 0.27, len(styles)), styles.items()):
        found = [_find(rows, target, kind, "preservation") for target in targets]
        values = np.array([row.value for row in found])
        errors = np.array([[row.value - row.ci_low, row.ci_high - row.value] for row in found]).T
        left.errorbar(values, positions + offset, xerr=errors, fmt="o", color=colour, label=label, capsize=2)
        shift = [_find(rows, target, kind, "shift_pearson") for target in targets]
        middle.errorbar([row.value for row in shift], positions + offset,
                        xerr=np.array([[r.value - r.ci_low, r.ci_high - r.value] for r in shift]).T,
                        fmt="o", color=colour, capsize=2)
    for axis, title in ((left, "steering preservation (shift / native shift)"),
                        (middle, "per-prompt correlation of shifts with native")):
        axis.set_yticks(positions, labels)
        axis.invert_yaxis()
        axis.axvline(0.0, color="0.6", lw=0.8)
        axis.axvline(1.0, color="0.6", lw=0.8, ls="--")
        axis.set_title(title, fontsize=10)
    middle.set_yticklabels([])
    figure.legend(*left.get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=4, frameon=False)
    if attributes:
        kept = np.array([[_value(rows, t, "transferred_linear", "preservation", a) for a in attributes] for t in targets])
        native = np.array([[_value(rows, t, "native", "shift", a) for a in attributes] for t in targets])
        image = right.imshow(kept, cmap="RdYlGn", vmin=0.0, vmax=1.2, aspect="auto")
        for (i, j), value in np.ndenumerate(kept):
            right.text(j, i, f"{100 * value:.0f}%\n{native[i, j]:.1f} nats", ha="center", va="center", fontsize=7)
        right.set_xticks(np.arange(len(attributes)), attributes, fontsize=8, rotation=30)
        right.set_yticks(positions, [])
        right.set_title("A v preservation per attribute\n(native shift below)", fontsize=10)
        figure.colorbar(image, ax=right, fraction=0.08)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(figure, path)


def _value(rows, target, vector, metric, attribute) -> float:
    row = _find(rows, target, vector, metric, attribute)
    return float("nan") if row is None else row.value


def write_breakdown(rows: Sequence[BreakdownRow], out_dir, *, alpha: float, extra: Mapping | None = None) -> str:
    """``breakdown.json`` (rows + ``extra``), ``.csv``, ``.md`` and ``breakdown.png`` in ``out_dir``; returns the table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "breakdown.json", {"alpha": alpha, **(extra or {}),
                                                   "rows": [row.to_dict() for row in rows]})
    write_records_csv(out_dir / "breakdown.csv", rows, [field.name for field in dataclasses.fields(BreakdownRow)])
    table = breakdown_markdown(rows, alpha)
    write_text_atomic(out_dir / "breakdown.md", "# Where affine transfer breaks\n\n" + table + "\n")
    plot_breakdown(rows, out_dir / "breakdown.png")
    return table
