"""Mappers: fit maps between representation spaces, optax-style.

A mapper is ``Mapper(fit, apply, fit_from_stats)`` built by a factory;
states are pytrees. Affine states satisfy
``apply(state, x) == x @ linear(state) + bias(state)`` with ``x [n, d_s]``,
``linear(state) [d_s, d_t]``, ``bias(state) [d_t]`` — chains included.

Solvers: ``lstsq``, ``ridge`` (fixed α, or GCV / exact LOO / k-fold over a
grid), ``procrustes``, ``reduced_rank``, ``cca``, ``gradient``.
Pre-transforms: ``center``, ``standardize``, ``pca``, ``whiten``; composed
with ``chain``. Streaming: ``init_stats``, ``accumulate_stats``,
``merge_stats`` then ``mapper.fit_from_stats(stats)``. Persistence:
``save_map(state, path, MapInfo(...))`` writes one ``.safetensors`` file;
``load_map(path, source_site=..., ...)`` returns a ``LoadedMap`` that checks
models, sites and widths on use (``MapMismatchError``). All layer pairs at
once: ``fit_layer_pairs``.

Transformations. ``fit`` and ``apply`` are pure: ``jax.jit(mapper.fit)``,
``jax.vmap(mapper.fit)`` over stacked ``[L, n, d]`` pairs and ``jax.grad``
through ``apply`` all work. Value checks (NaN/Inf, too few rows) raise
``ValueError`` eagerly; under tracing they are ``checkify`` checks that
``checked_fit(jax.jit(mapper.fit))(x, y)`` raises as
``checkify.JaxRuntimeError`` (a plain ``jax.jit`` skips them). A failed
Cholesky falls back to the eigen-solver in both paths. bf16/fp16 inputs are
accumulated in float32. Metrics: ``lrt_jax.metrics`` (also ``lrt_jax.mappers.metrics``).
"""

from lrt_jax.mappers._base import (
    AffineState, Mapper, NotAffineError, apply_affine, bias, linear)
from lrt_jax.mappers._cca import CCAState, cca
from lrt_jax.mappers._chain import ChainState, chain
from lrt_jax.mappers._gradient import (
    GradientAffineState, MLPState, cosine_loss, gradient, mse_loss)
from lrt_jax.mappers._io import LoadedMap, MapInfo, MapMismatchError, load_map, save_map
from lrt_jax.mappers._layer_pairs import LayerPairScores, fit_layer_pairs
from lrt_jax.mappers._procrustes import procrustes
from lrt_jax.mappers._reduced_rank import ReducedRankState, reduced_rank
from lrt_jax.mappers._ridge import RidgeState, lstsq, ridge
from lrt_jax.mappers._stats import (
    Moments, SufficientStats, accumulate_stats, init_stats, merge_stats,
    moments_from_stats)
from lrt_jax.mappers._transforms import (
    LinearTransformState, ScalingState, center, pca, standardize, whiten)
from lrt_jax.mappers._validate import checked_fit
from lrt_jax import metrics

__all__ = [
    "AffineState", "CCAState", "ChainState", "GradientAffineState",
    "LayerPairScores", "LinearTransformState", "LoadedMap", "MLPState", "MapInfo",
    "MapMismatchError", "Mapper", "Moments",
    "NotAffineError", "ReducedRankState", "RidgeState", "ScalingState",
    "SufficientStats", "accumulate_stats", "apply_affine", "bias", "cca", "center",
    "chain", "checked_fit", "cosine_loss", "fit_layer_pairs", "gradient",
    "init_stats", "linear", "load_map", "lstsq", "merge_stats", "metrics",
    "moments_from_stats", "mse_loss", "pca", "procrustes", "reduced_rank", "ridge",
    "save_map", "standardize", "whiten",
]
