"""The Linear Representation Transferability experiment, end to end.

For a source model S and target models T₁, T₂, …:

1. **Maps.** Capture token-aligned activations of S and T on shared texts at every
   layer, fit a ridge map ``h_T ≈ h_S A + b`` (α by GCV) for every layer pair on 80% of
   the texts in one vmapped call and score R² (and CKA) on the held-out 20%
   (:mod:`lrt_jax.lrt.maps`).
2. **Vectors.** For each attribute, the CAA difference of means at the last token of
   contrastive pairs gives a native vector in every model.
3. **Transfer.** The source vector goes through the steering-layer map as ``A v``
   (linear) and ``A v + b`` (affine); controls are random vectors of the native norm
   and the unmapped source vector (zero-padded/truncated): :func:`lrt_jax.steering.with_controls`.
4. **Sweep.** On held-out neutral probe prompts (``n_random`` random controls averaged), add ``α·m·v/‖v‖`` at every position
   of the target site (``m`` = the row's mean residual norm, so α is in units of the
   residual norm and comparable across models) for every α and vector in one
   compiled call, and measure the propensity (log-probability margin of the
   attribute's "+" over its "−" answer words).
5. **Compare.** Per α: Pearson correlation across prompts and MSE between native and
   transferred propensities, steerability slopes (:func:`lrt_jax.evaluation.lrt_comparison`),
   and the *relative shift* ``mean(P_v(α) − P_v(0)) / mean(P_native(α) − P_native(0))``; plus the share of
   "+" attribute words among the attribute words of sampled generations steered at
   ``generation_alpha``.
6. **Cost.** Per vector kind × α × prompt, the mean next-token KL of the steered to the unsteered
   model on the same probe prompts, to see where a vector starts to damage the model.

Scores are tidy :class:`~lrt_jax.results.ResultsTable` rows inside the frozen dataclasses
of :mod:`lrt_jax.lrt.results`; :mod:`lrt_jax.lrt.report` writes them out.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from lrt_jax import evaluation, steering
from lrt_jax.lm import LM
from lrt_jax.lrt.maps import LayerMaps, fit_layer_maps
from lrt_jax.lrt.results import COST, PROPENSITY, VECTOR_KINDS, AttributeResult, LRTResult, TargetSteering
from lrt_jax.lrt.steer import contrastive_vector, generated_word_share, steered_propensity
from lrt_jax.organisms import probes
from lrt_jax.results import ResultRecord, ResultsTable
from lrt_jax.text import encode


@dataclasses.dataclass(frozen=True)
class LRTConfig:
    """What the experiment measures.

    Attributes:
      source_layer: layer of the source model whose ``resid_post`` holds the steering vector.
      target_layers: per target model name, its steering layer.
      attributes: organism attributes to steer (the first two values are contrasted).
      alphas: strengths in units of the mean residual norm at the site (include 0).
      n_fit_texts: texts whose tokens fit the maps of every layer pair (20% held out for R²).
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


def steered_kl(lm: LM, prompts: Sequence[str], site: str, vectors, alphas, *, normalize: str = "residual") -> np.ndarray:
    """``[n_vectors, n_alphas, n_prompts]``: each prompt's mean next-token ``KL(steered ‖ unsteered)``.

    The same steering as :func:`steered_propensity` (``Add(site, v, α)`` at every position), scored
    by :func:`lrt_jax.evaluation.steered_next_token_cost` over each prompt's real positions.
    """
    batch = encode(lm, list(prompts))
    kl, _ = evaluation.steered_next_token_cost(
        lm.config, lm.params, jnp.asarray(batch.tokens), jnp.asarray(batch.attention_mask),
        jnp.asarray(np.asarray(vectors, np.float32)), jnp.asarray(alphas, jnp.float32), site=site, normalize=normalize)
    return np.asarray(kl)


def average_random_controls(per_vector: dict) -> dict:
    """Replace ``random_0 … random_{n-1}`` by their mean, ``random`` (one control with less variance)."""
    randoms = [name for name in per_vector if name.startswith("random_")]
    if not randoms:  # a single control is already called "random"
        return dict(per_vector)
    kept = {name: value for name, value in per_vector.items() if name not in randoms}
    return {**kept, "random": np.mean([per_vector[name] for name in randoms], axis=0)}


def score_records(task: str, model: str, metric: str, per_kind: dict[str, np.ndarray], alphas) -> list[ResultRecord]:
    """Tidy rows of ``{kind: [n_alphas, n_prompts]}`` for the kinds of :data:`VECTOR_KINDS` present."""
    return [ResultRecord(task, model, kind, float(alpha), item, metric, float(value))
            for kind in VECTOR_KINDS if kind in per_kind
            for alpha, row in zip(alphas, per_kind[kind]) for item, value in enumerate(row)]


def steer_target(attribute: str, pairs, probe, source_vector, target: LM, site: str, maps: LayerMaps, key,
                 config: LRTConfig) -> TargetSteering:
    """The native vector of ``target``, the transferred ones and controls, swept, compared and sampled."""
    alphas = np.asarray(config.alphas, np.float32)
    native = contrastive_vector(target, pairs.positive_texts, pairs.negative_texts, site,
                                dataset=source_vector.metadata.dataset)
    vectors = steering.with_controls(source_vector, maps.state, key=key,
                                     target_model=target.name, target_site=site, native=native,
                                     n_random=config.n_random)
    stack = np.stack([np.asarray(vector.vector) for vector in vectors.values()])
    ids = answer_ids(target, probe)
    propensity = average_random_controls(dict(zip(vectors, steered_propensity(target, probe.prompts, site, stack,
                                                                              alphas, *ids))))
    cost = average_random_controls(dict(zip(vectors, steered_kl(target, probe.prompts, site, stack, alphas))))
    scores = ResultsTable(tuple(score_records(attribute, target.name, PROPENSITY, propensity, alphas)
                                + score_records(attribute, target.name, COST, cost, alphas)))

    def share(vector, alpha):
        return generated_word_share(target, probe.prompts, site, vector, alpha, probe.positive_answers,
                                    probe.negative_answers, max_new_tokens=config.max_new_tokens, seed=config.seed)

    generated = average_random_controls({kind: share(vector.vector, config.generation_alpha)
                                         for kind, vector in vectors.items()})
    return TargetSteering(
        model=target.name, site=site, scores=scores,
        comparison=evaluation.lrt_comparison(scores, metric=PROPENSITY, compared=VECTOR_KINDS[1:]),
        cosine_with_native={kind: float(steering.cosine_similarity(vectors[kind], native))
                            for kind in vectors if kind.startswith("transferred_")},
        generation_alpha=config.generation_alpha,
        generated_positive_share={kind: float(generated[kind]) for kind in VECTOR_KINDS},
        generated_positive_share_unsteered=share(native.vector, 0.0),
    )


def answer_ids(lm: LM, probe) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the probe's "+" and "−" answer words in ``lm``'s vocabulary."""
    return (probes.answer_token_ids(lm.tokenizer, probe.positive_answers),
            probes.answer_token_ids(lm.tokenizer, probe.negative_answers))


def run_attribute(attribute: str, source: LM, targets: dict[str, LM], maps: dict[str, LayerMaps],
                  config: LRTConfig) -> AttributeResult:
    """Vectors, sweeps and comparisons for one attribute across all target models."""
    pairs = probes.make_contrastive_pairs(attribute, count=config.n_pairs, seed=config.seed + 11)
    probe = probes.make_attribute_probe(attribute, count=config.n_probe_prompts, seed=config.seed + 23)
    dataset = f"organism contrastive pairs ({attribute}: {pairs.positive_value} vs {pairs.negative_value})"
    source_site = f"layers.{config.source_layer}.resid_post"
    source_vector = contrastive_vector(source, pairs.positive_texts, pairs.negative_texts, source_site, dataset=dataset)
    alphas = np.asarray(config.alphas, np.float32)
    source_propensity = steered_propensity(source, probe.prompts, source_site, source_vector.vector[None], alphas,
                                           *answer_ids(source, probe))[0]
    results = {}
    for index, (name, layer) in enumerate(config.target_layers):
        key = jax.random.fold_in(jax.random.key(config.seed), index)
        results[name] = steer_target(attribute, pairs, probe, source_vector, targets[name],
                                     f"layers.{layer}.resid_post", maps[name], key, config)
    return AttributeResult(
        positive_value=pairs.positive_value, negative_value=pairs.negative_value, source_model=source.name,
        source_site=source_site, targets=results,
        source_scores=ResultsTable(tuple(score_records(attribute, source.name, PROPENSITY,
                                                       {"native": source_propensity}, alphas))))


def run_lrt_experiment(source: LM, targets: dict[str, LM], texts: Sequence[str], config: LRTConfig,
                       *, progress: bool = True) -> LRTResult:
    """Run every step for every attribute (module docstring); write it with :func:`lrt_jax.lrt.write_report`."""
    names = [source.name, *(targets[name].name for name, _ in config.target_layers)]
    if len(set(names)) != len(names):
        raise ValueError(f"The models are named {names}; the score tables tell them apart by name, so give each LM "
                         "a distinct name (LM._replace(name=...)).")
    texts = list(texts)[: config.n_fit_texts]
    maps = {name: fit_layer_maps(source, targets[name], texts, config.ridge_alphas, config.seed,
                                 steering_pair=(config.source_layer, layer), progress=progress)
            for name, layer in tqdm(config.target_layers, desc="fit maps", disable=not progress)}
    attributes = {attribute: run_attribute(attribute, source, targets, maps, config)
                  for attribute in tqdm(config.attributes, desc="attributes", disable=not progress)}
    return LRTResult(config=config, source=source.name,
                     targets={name: targets[name].name for name, _ in config.target_layers},
                     maps=maps, attributes=attributes)
