"""Maps between every layer of a source and a target model, and how well each fits.

On shared texts, the two models' ``resid_post`` activations pair up token by token, or word by word
when their tokenizers differ (:func:`~lrt_jax.lrt.activations.paired_token_activations`). Whole texts are held out
— a seeded 20% of them, so tokens of one text never sit on both sides — and a ridge
map ``h_T ≈ h_S A + b`` (penalty chosen by GCV from ``ridge_alphas``) is fitted for
every source layer × target layer in one vmapped call
(:func:`lrt_jax.mappers.fit_layer_pairs`). Its scores on the held-out tokens form
the R² matrix ``[n_source_layers, n_target_layers]`` (and the map-free linear CKA
beside it) that the report draws as a heatmap.

The map the steering vectors travel through, that of the steering layer pair, is
fitted once more on its own from the same rows: the batched solve of
``fit_layer_pairs`` rounds differently in the last bits (its bias differs by an ulp
or two), and a vector's map should not depend on how many other pairs were scored
beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from lrt_jax import mappers
from lrt_jax.lm import LM
from lrt_jax.lrt.activations import paired_token_activations

HELD_OUT_SHARE = 5  # one text in five is held out for the scores


@dataclasses.dataclass(frozen=True)
class LayerMaps:
    """Ridge maps from every source layer to every target layer, with their held-out scores.

    Attributes:
      r2: ``[n_source_layers, n_target_layers]`` held-out R² of the map from source layer
        ``i`` to target layer ``j`` (both at ``resid_post``).
      cka: ``[n_source_layers, n_target_layers]`` held-out linear CKA of the two layers.
      steering_pair: ``(source_layer, target_layer)`` of the steering sites.
      state: the ridge map of ``steering_pair`` (for :func:`lrt_jax.steering.with_controls`).
    """

    r2: np.ndarray
    cka: np.ndarray
    steering_pair: tuple[int, int]
    state: Any = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready: ``{"r2": [[...]], "cka": [[...]], "steering_pair": [s, t]}``, rows = source layers."""
        return {"r2": self.r2.tolist(), "cka": self.cka.tolist(), "steering_pair": list(self.steering_pair)}


def held_out_rows(text_index: np.ndarray, n_texts: int, seed: int) -> np.ndarray:
    """Boolean ``[n_rows]``: the rows of a seeded ``1/HELD_OUT_SHARE`` of the texts."""
    held_out = np.random.default_rng(seed).permutation(n_texts)[: n_texts // HELD_OUT_SHARE]
    return np.isin(text_index, held_out)


def fit_layer_maps(source: LM, target: LM, texts: Sequence[str], ridge_alphas: Sequence[float], seed: int, *,
                   steering_pair: tuple[int, int], progress: bool = True) -> LayerMaps:
    """Ridge maps between all ``resid_post`` layers of ``source`` and ``target``, scored on held-out texts.

    Args:
      source, target: models with tokenizers; different vocabularies pair word by word
        (:func:`~lrt_jax.lrt.activations.paired_token_activations`).
      texts: shared texts; ``len(texts) // 5`` of them (chosen by ``seed``) are held out.
      ridge_alphas: the penalties GCV chooses from, per layer pair.
      seed: seeds the held-out split.
      steering_pair: ``(source_layer, target_layer)`` whose map to keep (module docstring).
      progress: show capture progress bars.

    Returns:
      :class:`LayerMaps` with ``r2``/``cka`` ``[source.n_layers, target.n_layers]``.

    Example::

        maps = fit_layer_maps(small, large, texts, (0.1, 1.0, 10.0), seed=0, steering_pair=(3, 6))
        maps.r2.argmax(axis=1)  # the best-fitting target layer of each source layer
    """
    n_source, n_target = source.config.n_layers, target.config.n_layers
    if not (0 <= steering_pair[0] < n_source and 0 <= steering_pair[1] < n_target):
        raise ValueError(f"steering_pair {tuple(steering_pair)} is outside the {n_source} source × {n_target} "
                         "target layers.")
    source_sites = [f"layers.{i}.resid_post" for i in range(n_source)]
    target_sites = [f"layers.{j}.resid_post" for j in range(n_target)]
    paired = paired_token_activations(source, target, texts, source_sites, target_sites, progress=progress)
    test = held_out_rows(paired.text_index, len(texts), seed)
    if not test.any() or test.all():
        raise ValueError(f"{len(texts)} texts leave no held-out or no training tokens; give at least "
                         f"{HELD_OUT_SHARE} texts.")
    xs = np.stack([paired.source[site] for site in source_sites])  # [L_s, n, d_s]
    ys = np.stack([paired.target[site] for site in target_sites])  # [L_t, n, d_t]
    mapper = mappers.ridge(alphas=list(ridge_alphas), select="gcv")
    scores = mappers.fit_layer_pairs(mapper, xs[:, ~test], ys[:, ~test], xs[:, test], ys[:, test])
    source_layer, target_layer = steering_pair
    state = mapper.fit(xs[source_layer, ~test], ys[target_layer, ~test])
    return LayerMaps(np.asarray(scores.r2), np.asarray(scores.cka), (int(source_layer), int(target_layer)), state)
