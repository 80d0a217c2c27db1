"""Benchmark mapper solvers by what they preserve: geometry, steering and substitution, with intervals.

For a source model S and a target model T that share a tokenizer:

1. **Rows.** Capture token-paired ``resid_post`` activations of every layer of both on
   shared texts once (:func:`~lrt_jax.lrt.paired_token_activations`); a seeded fifth of the
   texts is held out (:func:`lrt_jax.lrt.maps.held_out_rows`) and at most
   ``max_test_rows`` of its tokens are the test rows. These exact rows are kept
   (:attr:`BenchResult.activations`) so another library can refit and check a score.
2. **Layer choice** (all layer pairs, one compiled call): ridge (α by GCV) for every
   source × target layer by :func:`lrt_jax.mappers.fit_layer_pairs`, giving the R² and
   map-free CKA heatmaps, and the steering preservation of every pair. Three rules pick a
   target layer per source layer — relative depth, argmax R², argmax steering
   preservation (the oracle) — and :class:`LayerChoice` says which geometric rule
   predicts transfer best (the steering preservation its choice reaches, and the
   Spearman ρ of its score with steering preservation over all pairs).
3. **Solvers** (:func:`default_solvers`, ≥ 8): each is fitted on the training rows of
   every benchmarked layer pair in one compiled call (a ``lax.map`` over pairs), timed after compilation,
   and scored on the test rows:

   * ``r2`` — pooled R² of ``ŷ`` against ``y``; ``cosine`` — mean row cosine;
     ``cka`` — linear CKA of ``ŷ`` and ``y``; ``knn`` — mutual k-NN overlap of ``ŷ`` and ``y``;
   * ``steering_preservation`` — per attribute, the propensity shift on held-out probe
     prompts of the transferred CAA vector ``apply(μ⁺) − apply(μ⁻)`` (``v A`` for an affine
     map) over that of the target's native CAA vector, both added at ``steering_alpha``
     residual norms (:func:`lrt_jax.lrt.steered_propensity`); ``attribute="all"`` is the
     mean over attributes;
   * ``substitution_kl`` — the target's mean next-token ``KL(original ‖ substituted)`` on
     held-out texts when its site holds the mapped source states
     (:func:`lrt_jax.evaluation.substituted_next_token_kl`);
   * ``fit_seconds`` — wall time of the compiled fit per layer pair (no interval: a
     timing is not a statistic of the rows).

   Every other score has a percentile bootstrap interval over rows, prompts or texts,
   computed as a ``vmap`` over resample index arrays (:mod:`lrt_jax.evaluation._geometry`).

:mod:`lrt_jax.lrt.bench_report` writes the leaderboard (JSON, CSV, Markdown) and plots.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from lrt_jax import evaluation, mappers, metrics
from lrt_jax._capture_texts import capture_texts
from lrt_jax.lm import LM
from lrt_jax.lrt.activations import paired_token_activations
from lrt_jax.lrt.demo import relative_depth_layer
from lrt_jax.lrt.maps import held_out_rows
from lrt_jax.lrt.steer import steered_propensity
from lrt_jax.organisms import probes
from lrt_jax.text import encode

METRICS = ("r2", "cka", "cosine", "knn", "steering_preservation", "substitution_kl", "fit_seconds")
GEOMETRIC = METRICS[:4]
ALL_ATTRIBUTES = "all"
LAYER_CHOICE_SOLVER = "layer choice"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What the benchmark measures (module docstring).

    Attributes:
      layer_pairs: ``(source_layer, target_layer)`` pairs the solvers are benchmarked on; ``None``: all.
      attributes: organism attributes for steering preservation (empty: no steering scores).
      max_test_rows: held-out tokens scored (a seeded subsample; k-NN is O(rows²)).
      n_substitution_texts: held-out texts of the substitution KL.
      n_pairs: contrastive pairs per attribute for the CAA vectors.
      n_probe_prompts: held-out neutral prompts per attribute for the propensity shift.
      steering_alpha: strength, in units of the site's mean residual norm.
      ridge_alphas: penalty grid of the ridge solvers (and of the layer-choice ridge).
      gradient_steps: optimisation steps of the gradient solvers.
      knn_k: neighbours of the mutual k-NN score.
      n_bootstrap: resamples per interval; confidence: their coverage.
      seed: seeds the split, the subsample, the probes and the resamples.
    """

    layer_pairs: tuple[tuple[int, int], ...] | None = None
    attributes: tuple[str, ...] = ("sentiment", "topic", "tense", "formality")
    max_test_rows: int = 512
    n_substitution_texts: int = 24
    n_pairs: int = 32
    n_probe_prompts: int = 32
    steering_alpha: float = 1.0
    ridge_alphas: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
    gradient_steps: int = 300
    knn_k: int = 10
    n_bootstrap: int = 200
    confidence: float = 0.95
    seed: int = 0


class Solver(NamedTuple):
    """A mapper and its factory call as text (the leaderboard's ``solver`` column)."""

    name: str
    mapper: mappers.Mapper


def _grid_text(alphas) -> str:
    return "(" + ", ".join(f"{a:g}" for a in alphas) + ")"


def default_solvers(d_source: int, d_target: int, config: BenchConfig) -> tuple[Solver, ...]:
    """The benchmarked grid: ridge (GCV / LOO / 5-fold), lstsq, procrustes, reduced rank at two ranks,
    cca, gradient (affine and MLP) and chains with center / standardize / pca / whiten."""
    grid, text = list(config.ridge_alphas), _grid_text(config.ridge_alphas)
    width = min(d_source, d_target)
    low, high = max(1, width // 8), max(1, width // 2)
    steps = config.gradient_steps
    ridge = mappers.ridge(alphas=grid, select="gcv")
    return (
        Solver(f"ridge(alphas={text}, select='gcv')", ridge),
        Solver(f"ridge(alphas={text}, select='loo')", mappers.ridge(alphas=grid, select="loo")),
        Solver(f"ridge(alphas={text}, select='kfold', folds=5)", mappers.ridge(alphas=grid, select="kfold", folds=5)),
        Solver("lstsq()", mappers.lstsq()),
        Solver("procrustes()", mappers.procrustes()),
        Solver(f"reduced_rank({low}, alpha=1.0)", mappers.reduced_rank(low, 1.0)),
        Solver(f"reduced_rank({high}, alpha=1.0)", mappers.reduced_rank(high, 1.0)),
        Solver(f"cca({high}, alpha=0.001)", mappers.cca(high, 1e-3)),
        Solver(f"gradient('affine', steps={steps})", mappers.gradient("affine", steps=steps)),
        Solver(f"gradient('mlp', steps={steps}, hidden=256)", mappers.gradient("mlp", steps=steps, hidden=256)),
        Solver(f"chain(center(), lstsq())", mappers.chain(mappers.center(), mappers.lstsq())),
        Solver(f"chain(standardize(), ridge(alphas={text}, select='gcv'))", mappers.chain(mappers.standardize(), ridge)),
        Solver(f"chain(pca({high}), ridge(alphas={text}, select='gcv'))", mappers.chain(mappers.pca(high), ridge)),
        Solver(f"chain(whiten(), ridge(alphas={text}, select='gcv'))", mappers.chain(mappers.whiten(), ridge)),
    )


@dataclasses.dataclass(frozen=True)
class LeaderboardRow:
    """One score of one solver on one layer pair (``attribute`` only for steering preservation)."""

    solver: str
    alpha: float | None
    source_site: str
    target_site: str
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    attribute: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """All-pairs scores of the ridge (GCV) map and the rules that pick a target layer.

    Attributes:
      r2, cka: ``[L_s, L_t]`` held-out R² of the map, map-free linear CKA of the layers.
      steering_preservation: ``[L_s, L_t]`` mean over attributes (NaN without attributes).
      choices: ``{rule: [target layer per source layer]}`` for ``relative_depth``, ``argmax_r2``,
        ``argmax_cka`` and ``argmax_steering`` (the oracle).
      reached: ``{rule: mean over source layers of the steering preservation of its choice}``.
      spearman: ``{score: Spearman ρ over all pairs of the rule's score with steering preservation}``
        (relative depth scores a pair by ``−|i/L_s − j/L_t|``).
      best_rule: the geometric rule whose choices reach the highest steering preservation.
      auto_pair: ``(source, target)`` layers of the best pair by the best rule's score.
    """

    r2: np.ndarray
    cka: np.ndarray
    steering_preservation: np.ndarray
    choices: dict
    reached: dict
    spearman: dict
    best_rule: str | None
    auto_pair: tuple[int, int]

    def to_dict(self) -> dict:
        return {"r2": self.r2.tolist(), "cka": self.cka.tolist(),
                "steering_preservation": self.steering_preservation.tolist(),
                "choices": {rule: [int(j) for j in layers] for rule, layers in self.choices.items()},
                "reached": self.reached, "spearman": self.spearman, "best_rule": self.best_rule,
                "auto_pair": list(self.auto_pair)}


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """The leaderboard rows, the layer choice and the exact rows used (``activations``)."""

    config: BenchConfig
    source: str
    target: str
    solvers: tuple[str, ...]
    rows: tuple[LeaderboardRow, ...]
    layer_choice: LayerChoice
    activations: dict = dataclasses.field(repr=False, compare=False)
    wall_seconds: float = float("nan")


class _Entry(NamedTuple):
    """A fitted map of one layer pair, and what the behavioural scores need from it."""

    solver: str
    alpha: float | None
    source_layer: int
    target_layer: int
    transferred: np.ndarray  # [n_attributes, d_t]: apply(μ⁺) − apply(μ⁻) per attribute
    substituted: np.ndarray  # [n_texts, seq, d_t]: the mapped source states of the substitution texts


def site_of(layer: int) -> str:
    return f"layers.{layer}.resid_post"


def chosen_alpha(state) -> np.ndarray | None:
    """The penalty a ridge state (or the ridge stage of a chain) chose, with the state's batch axes."""
    if isinstance(state, mappers.RidgeState):
        return np.asarray(state.alpha)
    if isinstance(state, mappers.ChainState):
        for stage in reversed(state.stages):
            found = chosen_alpha(stage)
            if found is not None:
                return found
    return None


# (y, ŷ) -> score, in the order of the "r2", "cka", "cosine" rows; "knn" follows through its per-row terms.
_ROW_SCORES = (metrics.r2_score, lambda y, y_hat: metrics.linear_cka(y_hat, y), metrics.mean_cosine_similarity)


def _geometric_scores(apply, states, x_test, y_test, indices, k):
    """``(point [P, 4], draws [P, 4, B])`` of R², CKA, cosine and k-NN for every pair (one pair at a time)."""
    def one(inputs):
        state, x, y = inputs
        y_hat = apply(state, x)
        knn = evaluation.mutual_knn_per_row(y_hat, y, k)
        point = jnp.stack([score(y, y_hat) for score in _ROW_SCORES] + [jnp.mean(knn)])
        draws = jnp.stack([evaluation.bootstrap_statistic(score, (y, y_hat), indices) for score in _ROW_SCORES]
                          + [evaluation.bootstrap_statistic(jnp.mean, (knn,), indices)])
        return point, draws

    return jax.lax.map(one, (states, x_test, y_test))


_geometric_scores = jax.jit(_geometric_scores, static_argnums=(0, 5))


@partial(jax.jit, static_argnums=(0, 4))
def _mapped_vectors_and_states(apply, states, means, source_states, d_target):
    """Per pair: ``apply(μ⁺) − apply(μ⁻)`` ``[A, d_t]`` and the mapped substitution states ``[b, s, d_t]``."""
    def one(inputs):
        state, mu, x = inputs
        mapped = apply(state, mu.reshape(-1, mu.shape[-1])).reshape(mu.shape[0], 2, d_target)
        substituted = apply(state, x.reshape(-1, x.shape[-1])).reshape(*x.shape[:2], d_target)
        return mapped[:, 0] - mapped[:, 1], substituted

    return jax.lax.map(one, (states, means, source_states))


def _fit_pairs_one_by_one(fit, xs, ys):
    """``fit(xs[p], ys[p])`` for every pair, in a ``lax.map`` loop rather than a ``vmap``.

    A ``vmap`` batches the solvers' ``eigh`` over pairs, and jaxlib 0.10.2 runs a batched
    CPU ``eigh`` on the XLA thread pool (``ParallelBatchMap``); several of them at once
    (k-fold ridge decomposes every fold) wait on each other's pool tasks and hang.
    """
    return jax.lax.map(lambda pair: fit(*pair), (xs, ys))


def _entries(solver: Solver, states, pairs, means, source_states, d_target, alphas) -> list[_Entry]:
    """The :class:`_Entry` of every pair of a batched fit (``states`` with a leading pair axis)."""
    source_layers = np.asarray([i for i, _ in pairs])
    transferred, substituted = _mapped_vectors_and_states(solver.mapper.apply, states, jnp.asarray(means[source_layers]),
                                                          jnp.asarray(source_states[source_layers]), d_target)
    transferred, substituted = np.asarray(transferred), np.asarray(substituted)
    return [_Entry(solver.name, None if alphas is None else _as_grid_value(np.mean(alphas[p])), i, j, transferred[p],
                   substituted[p]) for p, (i, j) in enumerate(pairs)]


def _as_grid_value(alpha) -> float:
    """A float32 penalty as the Python float it was written as (``0.01``, not ``0.009999999776``)."""
    return float(str(np.float32(alpha)))


def _check_pairs(layer_pairs, n_source: int, n_target: int) -> list[tuple[int, int]]:
    if layer_pairs is None:
        return [(i, j) for i in range(n_source) for j in range(n_target)]
    pairs = [(int(i), int(j)) for i, j in layer_pairs]
    outside = [pair for pair in pairs if not (0 <= pair[0] < n_source and 0 <= pair[1] < n_target)]
    if not pairs or outside:
        raise ValueError(f"layer pairs {outside or 'none'}: give pairs (source, target) inside the {n_source} source "
                         f"× {n_target} target layers, or None for all of them.")
    return list(dict.fromkeys(pairs))


class _AttributeData(NamedTuple):
    means: np.ndarray  # [L_s, A, 2, d_s] source class means (μ⁺, μ⁻) per layer and attribute
    native: np.ndarray  # [L_t, A, d_t] the target's CAA vectors
    probes: tuple  # one AttributeProbe per attribute


def _attribute_data(source: LM, target: LM, config: BenchConfig, source_sites, target_sites) -> _AttributeData:
    """CAA class means of the source at every layer, and the target's native vectors, per attribute."""
    means, native, probe_list = [], [], []
    for attribute in config.attributes:
        pairs = probes.make_contrastive_pairs(attribute, count=config.n_pairs, seed=config.seed + 11)
        probe_list.append(probes.make_attribute_probe(attribute, count=config.n_probe_prompts, seed=config.seed + 23))
        options = dict(batch_size=64, progress=False)
        positive = capture_texts(source, pairs.positive_texts, source_sites, **options)
        negative = capture_texts(source, pairs.negative_texts, source_sites, **options)
        means.append([[positive[s].mean(0), negative[s].mean(0)] for s in source_sites])
        positive = capture_texts(target, pairs.positive_texts, target_sites, **options)
        negative = capture_texts(target, pairs.negative_texts, target_sites, **options)
        native.append([positive[s].mean(0) - negative[s].mean(0) for s in target_sites])
    n_s, n_t = len(source_sites), len(target_sites)
    d_s, d_t = source.config.d_model, target.config.d_model
    means = np.asarray(means, np.float32).reshape(len(probe_list), n_s, 2, d_s).transpose(1, 0, 2, 3)
    native = np.asarray(native, np.float32).reshape(len(probe_list), n_t, d_t).transpose(1, 0, 2)
    return _AttributeData(means, native, tuple(probe_list))


def _ratio_per_attribute_and_mean(shifted, reference):
    """``[A + 1]``: ``mean(shifted)/mean(reference)`` per attribute, then their mean."""
    return jnp.concatenate([jnp.mean(shifted, 0) / jnp.mean(reference, 0),
                            evaluation.mean_shift_ratio(shifted, reference)[None]])


def _steering_intervals(target: LM, data: _AttributeData, entries: Sequence[_Entry], config: BenchConfig, key,
                        progress: bool) -> list[np.ndarray]:
    """Per entry ``[A + 1, 3]``: (value, low, high) of the steering preservation per attribute and overall."""
    alphas = np.asarray([0.0, config.steering_alpha], np.float32)
    indices = evaluation.bootstrap_indices(key, config.n_probe_prompts, config.n_bootstrap)
    answer_ids = [(probes.answer_token_ids(target.tokenizer, probe.positive_answers),
                   probes.answer_token_ids(target.tokenizer, probe.negative_answers)) for probe in data.probes]
    result: list = [None] * len(entries)
    by_layer = _group_by_target_layer(entries)
    for layer, members in tqdm(by_layer.items(), desc="steering", disable=not progress, leave=False):
        shifts = []  # per attribute [1 + M, n_prompts]
        for a, probe in enumerate(data.probes):
            stack = np.stack([data.native[layer, a], *(entries[m].transferred[a] for m in members)])
            propensity = steered_propensity(target, probe.prompts, site_of(layer), stack, alphas, *answer_ids[a])
            shifts.append(propensity[:, 1] - propensity[:, 0])
        shifts = jnp.asarray(np.stack(shifts, axis=-1))  # [1 + M, n_prompts, A]
        native = shifts[0]
        point = jax.vmap(lambda shifted: _ratio_per_attribute_and_mean(shifted, native))(shifts[1:])
        draws = jax.vmap(lambda shifted: evaluation.bootstrap_statistic(
            _ratio_per_attribute_and_mean, (shifted, native), indices))(shifts[1:])  # [M, B, A + 1]
        low, high = evaluation.percentile_interval(jnp.moveaxis(draws, 1, 0), config.confidence)
        triples = np.stack([np.asarray(point), np.asarray(low), np.asarray(high)], axis=-1)
        for position, m in enumerate(members):
            result[m] = triples[position]
    return result


def _substitution_intervals(target: LM, texts: Sequence[str], entries: Sequence[_Entry], config: BenchConfig, key,
                            progress: bool) -> list[np.ndarray]:
    """Per entry ``[3]``: (value, low, high) of the mean substitution KL over the texts."""
    batch = encode(target, list(texts))
    tokens, mask = jnp.asarray(batch.tokens), jnp.asarray(batch.attention_mask)
    indices = evaluation.bootstrap_indices(key, len(texts), config.n_bootstrap)
    result: list = [None] * len(entries)
    for layer, members in tqdm(_group_by_target_layer(entries).items(), desc="substitution", disable=not progress,
                               leave=False):
        values = jnp.asarray(np.stack([entries[m].substituted for m in members]))
        kl = evaluation.substituted_next_token_kl(target.config, target.params, tokens, mask, values,
                                                  site=site_of(layer))  # [M, n_texts]
        draws = jax.vmap(lambda per_text: evaluation.bootstrap_statistic(jnp.mean, (per_text,), indices))(kl)
        low, high = evaluation.percentile_interval(draws.T, config.confidence)
        for position, m in enumerate(members):
            result[m] = np.asarray([kl[position].mean(), low[position], high[position]])
    return result


def _group_by_target_layer(entries: Sequence[_Entry]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for index, entry in enumerate(entries):
        groups.setdefault(entry.target_layer, []).append(index)
    return groups


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ over the finite pairs (NaN with fewer than 3 or a constant side)."""
    from scipy.stats import spearmanr

    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(spearmanr(a[keep], b[keep]).statistic)


def choose_layers(r2: np.ndarray, cka: np.ndarray, steering: np.ndarray) -> LayerChoice:
    """Compare the layer-pairing rules on ``[L_s, L_t]`` score matrices (see :class:`LayerChoice`)."""
    n_s, n_t = r2.shape
    depth = -np.abs((np.arange(n_s)[:, None] + 1) / n_s - (np.arange(n_t)[None, :] + 1) / n_t)
    has_steering = bool(np.isfinite(steering).any())
    choices = {"relative_depth": np.asarray([relative_depth_layer(i, n_s, n_t) for i in range(n_s)]),
               "argmax_r2": np.argmax(r2, axis=1), "argmax_cka": np.argmax(cka, axis=1)}
    if has_steering:
        choices["argmax_steering"] = np.nanargmax(np.where(np.isfinite(steering), steering, -np.inf), axis=1)
    reached = {rule: float(np.mean(steering[np.arange(n_s), layers])) if has_steering else float("nan")
               for rule, layers in choices.items()}
    spearman = {"relative_depth": spearman_rho(depth.ravel(), steering.ravel()),
                "r2": spearman_rho(r2.ravel(), steering.ravel()), "cka": spearman_rho(cka.ravel(), steering.ravel())}
    geometric = ("relative_depth", "argmax_r2", "argmax_cka")
    best_rule = max(geometric, key=lambda rule: reached[rule]) if has_steering else None
    middle = n_s // 2
    auto_pair = (middle, int(choices[best_rule or "argmax_r2"][middle]))
    return LayerChoice(r2, cka, steering, choices, reached, spearman, best_rule, auto_pair)


def run_bench(source: LM, target: LM, texts: Sequence[str], config: BenchConfig = BenchConfig(), *,
              solvers: Sequence[Solver] | None = None, progress: bool = True) -> BenchResult:
    """Benchmark ``solvers`` (default :func:`default_solvers`) from ``source`` to ``target`` (module docstring).

    Args:
      source, target: models that share a tokenizer.
      texts: shared texts; a seeded fifth of them is held out.
      config: sizes, layer pairs, attributes, seeds.
      solvers: the solver grid; each mapper's ``fit`` must trace under ``vmap``.
      progress: progress bars for capture, solvers and the behavioural scores.

    Returns:
      :class:`BenchResult`; write it with :func:`lrt_jax.lrt.write_bench_report`.

    Example::

        result = run_bench(organism("small"), organism("large"), held_out_texts(200, 0))
        write_bench_report(result, "out/bench")
    """
    started = time.perf_counter()
    texts = list(texts)
    n_s, n_t = source.config.n_layers, target.config.n_layers
    pairs = _check_pairs(config.layer_pairs, n_s, n_t)
    solvers = tuple(solvers) if solvers is not None else default_solvers(source.config.d_model,
                                                                         target.config.d_model, config)
    if not solvers:
        raise ValueError("solvers is empty; give at least one Solver(name, mapper), or None for the default grid.")
    source_sites, target_sites = [site_of(i) for i in range(n_s)], [site_of(j) for j in range(n_t)]
    # Tokens, not words: the substitution KL writes mapped states at the target's token positions.
    paired = paired_token_activations(source, target, texts, source_sites, target_sites, progress=progress,
                                      pairing="tokens")
    held = held_out_rows(paired.text_index, len(texts), config.seed)
    if not held.any() or held.all():
        raise ValueError(f"{len(texts)} texts leave no held-out or no training tokens; give at least 5 texts.")
    test_rows = np.flatnonzero(held)
    if len(test_rows) > config.max_test_rows:
        test_rows = np.sort(np.random.default_rng(config.seed).choice(test_rows, config.max_test_rows, replace=False))
    if len(test_rows) <= config.knn_k:
        raise ValueError(f"{len(test_rows)} test rows are too few for knn_k={config.knn_k}; give more texts.")
    train_rows = np.flatnonzero(~held)
    xs = np.stack([paired.source[site] for site in source_sites])
    ys = np.stack([paired.target[site] for site in target_sites])
    x_train, x_test, y_train, y_test = xs[:, train_rows], xs[:, test_rows], ys[:, train_rows], ys[:, test_rows]
    activations = {**{f"source/{s}/train": x_train[i] for i, s in enumerate(source_sites)},
                   **{f"source/{s}/test": x_test[i] for i, s in enumerate(source_sites)},
                   **{f"target/{s}/train": y_train[j] for j, s in enumerate(target_sites)},
                   **{f"target/{s}/test": y_test[j] for j, s in enumerate(target_sites)}}

    held_texts = [texts[i] for i in sorted(set(paired.text_index[held].tolist()))[: config.n_substitution_texts]]
    captured = capture_texts(source, held_texts, source_sites, position=None, progress=False)
    source_states = np.stack([captured[site] for site in source_sites])  # [L_s, b, s, d_s]
    data = _attribute_data(source, target, config, source_sites, target_sites)
    d_t = target.config.d_model
    row_key, steering_key, substitution_key = jax.random.split(jax.random.key(config.seed), 3)
    row_indices = evaluation.bootstrap_indices(row_key, len(test_rows), config.n_bootstrap)

    ridge = Solver("ridge (GCV), all layer pairs", mappers.ridge(alphas=list(config.ridge_alphas), select="gcv"))
    layer_pairs = mappers.fit_layer_pairs(ridge.mapper, jnp.asarray(x_train), jnp.asarray(y_train),
                                          jnp.asarray(x_test), jnp.asarray(y_test))
    every_pair = [(i, j) for i in range(n_s) for j in range(n_t)]
    flat_states = jax.tree.map(lambda leaf: leaf.reshape(n_s * n_t, *leaf.shape[2:]), layer_pairs.states)
    choice_entries = _entries(ridge, flat_states, every_pair, data.means, source_states, d_t, None)

    rows, entries = [], []
    source_layers, target_layers = np.asarray([i for i, _ in pairs]), np.asarray([j for _, j in pairs])
    x_fit, y_fit = jnp.asarray(x_train[source_layers]), jnp.asarray(y_train[target_layers])
    for solver in tqdm(solvers, desc="solvers", disable=not progress):
        fit = jax.jit(_fit_pairs_one_by_one, static_argnums=0).lower(solver.mapper.fit, x_fit, y_fit).compile()
        start = time.perf_counter()
        states = jax.block_until_ready(fit(x_fit, y_fit))
        seconds = (time.perf_counter() - start) / len(pairs)
        point, draws = _geometric_scores(solver.mapper.apply, states, jnp.asarray(x_test[source_layers]),
                                         jnp.asarray(y_test[target_layers]), row_indices, config.knn_k)
        low, high = evaluation.percentile_interval(jnp.moveaxis(draws, 2, 0), config.confidence)
        point, low, high = np.asarray(point), np.asarray(low), np.asarray(high)
        alphas = chosen_alpha(states)
        fitted = _entries(solver, states, pairs, data.means, source_states, d_t, alphas)
        for p, entry in enumerate(fitted):
            common = dict(solver=solver.name, alpha=entry.alpha, source_site=site_of(entry.source_layer),
                          target_site=site_of(entry.target_layer))
            rows += [LeaderboardRow(**common, metric=metric, value=float(point[p, m]), ci_low=float(low[p, m]),
                                    ci_high=float(high[p, m])) for m, metric in enumerate(("r2", "cka", "cosine", "knn"))]
            rows.append(LeaderboardRow(**common, metric="fit_seconds", value=seconds, ci_low=None, ci_high=None))
        entries += fitted

    every_entry = entries + choice_entries
    if config.attributes:
        steering = _steering_intervals(target, data, every_entry, config, steering_key, progress)
    substitution = _substitution_intervals(target, held_texts, entries, config, substitution_key, progress)
    for index, entry in enumerate(entries):
        common = dict(solver=entry.solver, alpha=entry.alpha, source_site=site_of(entry.source_layer),
                      target_site=site_of(entry.target_layer))
        if config.attributes:
            for a, attribute in enumerate((*config.attributes, ALL_ATTRIBUTES)):
                value, low, high = steering[index][a]
                rows.append(LeaderboardRow(**common, metric="steering_preservation", value=float(value),
                                           ci_low=float(low), ci_high=float(high), attribute=attribute))
        value, low, high = substitution[index]
        rows.append(LeaderboardRow(**common, metric="substitution_kl", value=float(value), ci_low=float(low),
                                   ci_high=float(high)))

    steering_matrix = np.full((n_s, n_t), np.nan)
    if config.attributes:
        for offset, entry in enumerate(choice_entries):
            steering_matrix[entry.source_layer, entry.target_layer] = steering[len(entries) + offset][-1][0]
    choice = choose_layers(np.asarray(layer_pairs.r2), np.asarray(layer_pairs.cka), steering_matrix)
    return BenchResult(config=config, source=source.name, target=target.name, solvers=tuple(s.name for s in solvers),
                       rows=tuple(rows), layer_choice=choice, activations=activations,
                       wall_seconds=time.perf_counter() - started)
