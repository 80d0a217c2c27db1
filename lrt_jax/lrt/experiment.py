"""The Linear Representation Transferability experiment, end to end.

For a source model S and target models T₁, T₂, …:

1. **Maps.** Capture token-aligned activations of S and T on shared texts at several
   layer pairs, fit ridge maps ``h_T ≈ h_S A + b`` (α by GCV) on 80% of the texts and
   report R² on the held-out 20%.
2. **Vectors.** For each attribute, the CAA difference of means at the last token of
   contrastive pairs gives a native vector in every model.
3. **Transfer.** The source vector goes through the steering-layer map as ``A v``
   (linear) and ``A v + b`` (affine); controls are a random vector of equal norm and
   the unmapped source vector (zero-padded/truncated).
4. **Sweep.** On held-out neutral probe prompts (``n_random`` random controls averaged), add ``α·m·v/‖v‖`` at every position
   of the target site (``m`` = the row's mean residual norm, so α is in units of the
   residual norm and comparable across models) for every α and vector in one
   compiled call, and measure the propensity (log-probability margin of the
   attribute's "+" over its "−" answer words).
5. **Compare.** Per α: Pearson correlation across prompts and MSE between native and
   transferred propensities, steerability slopes, and the *relative shift*
   ``mean(P_v(α) − P_v(0)) / mean(P_native(α) − P_native(0))``; plus the share of
   "+" attribute words among the attribute words of sampled generations steered at
   ``generation_alpha``.
6. **Cost.** Per vector kind × α, the mean next-token KL of the steered to the unsteered
   model on the same probe prompts (``"cost"``), to see where a vector starts to damage the model.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from lrt_jax import mappers, metrics, steering
from lrt_jax.evaluation import steered_next_token_cost
from lrt_jax.lm import LM
from lrt_jax.lrt.activations import paired_token_activations
from lrt_jax.lrt.steer import contrastive_vector, generated_word_share, steered_propensity
from lrt_jax.organisms import probes
from lrt_jax.text import encode

VECTOR_KINDS = ("native", "transferred_linear", "transferred_affine", "random", "unmapped")  # in reports


@dataclasses.dataclass(frozen=True)
class LRTConfig:
    """What the experiment measures.

    Attributes:
      source_layer: layer of the source model whose ``resid_post`` holds the steering vector.
      target_layers: per target model name, its steering layer.
      fit_layer_pairs: per target model name, extra ``(source_layer, target_layer)`` pairs to
        fit maps for (the R² table); the steering pair is always included.
      attributes: organism attributes to steer (the first two values are contrasted).
      alphas: strengths in units of the mean residual norm at the site (include 0).
      n_fit_texts: texts whose tokens fit the maps (20% held out for R²).
      n_pairs: contrastive pairs per attribute for the difference of means.
      n_probe_prompts: held-out neutral prompts per attribute for propensity.
      ridge_alphas: ridge penalties searched by GCV.
      n_random: random control vectors (equal norm to the native one); their propensities are averaged.
      generation_alpha: strength of the steered generations (sampled at temperature 1 from ``seed``).
      max_new_tokens: length of the steered generations.
      seed: seeds the texts, the probes, the random controls and the sampling.
    """

    source_layer: int
    target_layers: tuple[tuple[str, int], ...]
    fit_layer_pairs: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    attributes: tuple[str, ...] = ("sentiment", "topic", "tense", "formality")
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    n_fit_texts: int = 400
    n_pairs: int = 64
    n_probe_prompts: int = 64
    ridge_alphas: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
    n_random: int = 4
    generation_alpha: float = 0.5
    max_new_tokens: int = 12
    seed: int = 0


def fit_layer_maps(source: LM, target: LM, texts: Sequence[str], layer_pairs, ridge_alphas, seed: int, *,
                   progress: bool = True):
    """Ridge maps per ``(source_layer, target_layer)`` and their held-out R²: ``({pair: state}, {pair: r2})``."""
    source_sites = sorted({f"layers.{s}.resid_post" for s, _ in layer_pairs})
    target_sites = sorted({f"layers.{t}.resid_post" for _, t in layer_pairs})
    paired = paired_token_activations(source, target, texts, source_sites, target_sites, progress=progress)
    held_out = np.random.default_rng(seed).permutation(len(texts))[: len(texts) // 5]
    test_rows = np.isin(paired.text_index, held_out)
    mapper = mappers.ridge(alphas=list(ridge_alphas), select="gcv")
    states, r2 = {}, {}
    for s, t in layer_pairs:
        x, y = paired.source[f"layers.{s}.resid_post"], paired.target[f"layers.{t}.resid_post"]
        state = mapper.fit(x[~test_rows], y[~test_rows])
        states[(s, t)] = state
        r2[(s, t)] = float(metrics.r2_score(y[test_rows], mapper.apply(state, x[test_rows])))
    return states, r2


def relative_shift(propensity: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[n_alphas]``: mean propensity change from α=0 relative to the reference vector's change."""
    change = propensity.mean(axis=-1) - propensity[0].mean()
    reference_change = reference.mean(axis=-1) - reference[0].mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(reference_change) > 1e-9, change / reference_change, np.nan)


def transferred_vectors(source_vector, native, state, target: LM, target_site: str, key, n_random: int) -> dict:
    """Vectors of one target: native, ``A v``, ``A v + b``, unmapped, and ``n_random`` random ones (norm of native)."""
    vectors = steering.with_controls(source_vector, state, key=key, target_model=target.name, target_site=target_site,
                                     native=native, n_random=n_random)
    return {kind: (vector, float(steering.cosine_similarity(vector, native)) if kind.startswith("transferred_")
                   else (1.0 if kind == "native" else None)) for kind, vector in vectors.items()}


def steered_kl(lm: LM, prompts: Sequence[str], site: str, vectors, alphas, *, normalize: str = "residual") -> np.ndarray:
    """``[n_vectors, n_alphas]``: mean over prompts of the mean next-token ``KL(steered ‖ unsteered)``.

    The same steering as :func:`steered_propensity` (``Add(site, v, α)`` at every position), scored
    by :func:`lrt_jax.evaluation.steered_next_token_cost` over each prompt's real positions.
    """
    batch = encode(lm, list(prompts))
    kl, _ = steered_next_token_cost(lm.config, lm.params, jnp.asarray(batch.tokens), jnp.asarray(batch.attention_mask),
                                    jnp.asarray(np.asarray(vectors, np.float32)), jnp.asarray(alphas, jnp.float32),
                                    site=site, normalize=normalize)
    return np.asarray(kl).mean(axis=-1)


def average_random_controls(per_vector: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Replace ``random_0 … random_{n-1}`` by their mean, ``random`` (one control with less variance)."""
    randoms = [name for name in per_vector if name.startswith("random_")]
    kept = {name: value for name, value in per_vector.items() if name not in randoms}
    return {**kept, "random": np.mean([per_vector[name] for name in randoms], axis=0)}


def run_attribute(attribute: str, source: LM, targets: dict[str, LM], maps: dict, config: LRTConfig) -> dict:
    """Vectors, sweeps and comparisons for one attribute across all target models."""
    pairs = probes.make_contrastive_pairs(attribute, count=config.n_pairs, seed=config.seed + 11)
    probe = probes.make_attribute_probe(attribute, count=config.n_probe_prompts, seed=config.seed + 23)
    dataset = f"organism contrastive pairs ({attribute}: {pairs.positive_value} vs {pairs.negative_value})"
    source_site = f"layers.{config.source_layer}.resid_post"
    source_vector = contrastive_vector(source, pairs.positive_texts, pairs.negative_texts, source_site, dataset=dataset)
    alphas = np.asarray(config.alphas, np.float32)
    result = {"positive_value": pairs.positive_value, "negative_value": pairs.negative_value, "targets": {}}

    def ids(lm):
        return (probes.answer_token_ids(lm.tokenizer, probe.positive_answers),
                probes.answer_token_ids(lm.tokenizer, probe.negative_answers))

    source_propensity = steered_propensity(source, probe.prompts, source_site, source_vector.vector[None], alphas,
                                           *ids(source))[0]
    result["source"] = {"model": source.name, "site": source_site, "propensity": source_propensity.tolist()}

    for index, (name, layer) in enumerate(config.target_layers):
        target, site = targets[name], f"layers.{layer}.resid_post"
        native = contrastive_vector(target, pairs.positive_texts, pairs.negative_texts, site, dataset=dataset)
        key = jax.random.fold_in(jax.random.key(config.seed), index)
        vectors = transferred_vectors(source_vector, native, maps[name][(config.source_layer, layer)], target, site,
                                      key, config.n_random)
        arrays = {kind: np.asarray(getattr(v, "vector", v)) for kind, (v, _) in vectors.items()}
        propensity = steered_propensity(target, probe.prompts, site, np.stack(list(arrays.values())), alphas,
                                        *ids(target))
        per_kind = average_random_controls(dict(zip(arrays, propensity)))
        cost = average_random_controls(dict(zip(arrays, steered_kl(target, probe.prompts, site,
                                                                   np.stack(list(arrays.values())), alphas))))
        comparisons = {kind: steering.compare_propensities(alphas, per_kind["native"], per_kind[kind])
                       for kind in VECTOR_KINDS[1:]}

        def share(vector, alpha):
            return generated_word_share(target, probe.prompts, site, vector, alpha, probe.positive_answers,
                                        probe.negative_answers, max_new_tokens=config.max_new_tokens, seed=config.seed)

        generated = average_random_controls({kind: share(vector, config.generation_alpha)
                                             for kind, vector in arrays.items()})
        result["targets"][name] = {
            "site": site,
            "cosine_with_native": {kind: float(c) for kind, (_, c) in vectors.items() if c is not None},
            "propensity": {kind: per_kind[kind].tolist() for kind in VECTOR_KINDS},
            "relative_shift": {kind: relative_shift(per_kind[kind], per_kind["native"]).tolist()
                               for kind in VECTOR_KINDS},
            "pearson": {kind: np.asarray(c.pearson).tolist() for kind, c in comparisons.items()},
            "mse": {kind: np.asarray(c.mse).tolist() for kind, c in comparisons.items()},
            "slope": {kind: float(steering.steerability_slope(alphas, per_kind[kind]).mean_slope)
                      for kind in VECTOR_KINDS},
            "cost": {kind: cost[kind].tolist() for kind in VECTOR_KINDS},
            "generation_alpha": config.generation_alpha,
            "generated_positive_share": {kind: float(generated[kind]) for kind in VECTOR_KINDS},
            "generated_positive_share_unsteered": share(arrays["native"], 0.0),
        }
    return result


def run_lrt_experiment(source: LM, targets: dict[str, LM], texts: Sequence[str], config: LRTConfig,
                       *, progress: bool = True) -> dict:
    """Run every step for every attribute; returns a JSON-ready dict (see :mod:`lrt_jax.lrt.report`)."""
    texts = list(texts)[: config.n_fit_texts]
    extra_pairs = dict(config.fit_layer_pairs)
    maps, r2 = {}, {}
    for name, layer in tqdm(config.target_layers, desc="fit maps", disable=not progress):
        pairs = tuple(dict.fromkeys(((config.source_layer, layer), *extra_pairs.get(name, ()))))
        maps[name], r2[name] = fit_layer_maps(source, targets[name], texts, pairs, config.ridge_alphas, config.seed,
                                              progress=progress)
    attributes = {attribute: run_attribute(attribute, source, targets, maps, config)
                  for attribute in tqdm(config.attributes, desc="attributes", disable=not progress)}
    return {
        "config": dataclasses.asdict(config),
        "source": source.name,
        "targets": {name: targets[name].name for name, _ in config.target_layers},
        "r2": {name: {f"{s}->{t}": value for (s, t), value in pairs.items()} for name, pairs in r2.items()},
        "attributes": attributes,
    }
