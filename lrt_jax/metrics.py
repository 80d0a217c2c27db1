"""How well does one representation predict, or resemble, another?

Prediction quality of a map (``y_hat`` vs ``y``, both ``[n, d_t]``):

* :func:`r2_score` — ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` pooled over dimensions
  (scikit-learn's ``multioutput="variance_weighted"``) or per dimension.
* :func:`mean_cosine_similarity` — mean over rows of ``cos(ŷ_i, y_i)``.

Similarity of two representations of the same ``n`` inputs (``x [n, d_x]``,
``y [n, d_y]``; widths may differ):

* :func:`linear_cka` — ``‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F)`` on centred
  features (Kornblith et al. 2019); 1 = same up to rotation and scale.
* :func:`mutual_knn_overlap` — mean fraction of shared k nearest neighbours
  (Huh et al. 2024, "platonic representation"); O(n²) memory.
* :func:`orthogonal_procrustes_distance` — ``min_R ‖X̂R − Ŷ‖²_F`` over
  (semi-)orthogonal R for centred, unit-Frobenius X̂, Ŷ:
  ``2 − 2‖X̂ᵀŶ‖_*`` ∈ [0, 2] (Ding et al. 2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_same_rows(a, b, names):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} must be"
                         " 2-D [n, d] with the same number of rows n.")
    return a, b


def _check_same_shape(y, y_hat):
    y, y_hat = _check_same_rows(y, y_hat, ("y", "y_hat"))
    if y.shape != y_hat.shape:
        raise ValueError(f"y {y.shape} and y_hat {y_hat.shape} must have the same shape.")
    return y, y_hat


def r2_score(y, y_hat, *, per_dimension: bool = False) -> jax.Array:
    """Coefficient of determination of ``y_hat`` for ``y`` (both ``[n, d]``).

    Returns:
        ``[]`` pooled R² (``1 − SSE/SST`` summed over dimensions), or ``[d]``
        per dimension when ``per_dimension`` (constant dimensions give
        ``-inf``/``nan`` as in 0/0; sklearn reports 1 or 0 there).
    """
    y, y_hat = _check_same_shape(y, y_hat)
    sse = jnp.sum(jnp.square(y - y_hat), axis=0)
    sst = jnp.sum(jnp.square(y - y.mean(0, keepdims=True)), axis=0)
    if per_dimension:
        return 1.0 - sse / sst
    return 1.0 - sse.sum() / sst.sum()


def mean_cosine_similarity(y, y_hat) -> jax.Array:
    """Mean over rows of ``⟨y_i, ŷ_i⟩ / (‖y_i‖ ‖ŷ_i‖)``; ``[]``."""
    y, y_hat = _check_same_shape(y, y_hat)
    norms = jnp.linalg.norm(y, axis=1) * jnp.linalg.norm(y_hat, axis=1)
    return jnp.mean(jnp.sum(y * y_hat, axis=1) / jnp.maximum(norms, 1e-30))


def linear_cka(x, y) -> jax.Array:
    """Linear centred kernel alignment between ``x [n, d_x]`` and ``y [n, d_y]``; ``[]``."""
    x, y = _check_same_rows(x, y, ("x", "y"))
    x, y = x - x.mean(0, keepdims=True), y - y.mean(0, keepdims=True)
    dot = lambda a, b: jnp.matmul(a.T, b, precision=_HIGHEST)
    cross = jnp.sum(jnp.square(dot(y, x)))
    return cross / (jnp.linalg.norm(dot(x, x)) * jnp.linalg.norm(dot(y, y)))


def _neighbours(features, k, metric):
    if metric == "cosine":
        features = features / jnp.linalg.norm(features, axis=1, keepdims=True)
        similarity = jnp.matmul(features, features.T, precision=_HIGHEST)
    else:
        sq = jnp.sum(jnp.square(features), axis=1)
        similarity = -(sq[:, None] + sq[None, :]
                       - 2 * jnp.matmul(features, features.T, precision=_HIGHEST))
    similarity = jnp.where(jnp.eye(features.shape[0], dtype=bool), -jnp.inf, similarity)
    return jax.lax.top_k(similarity, k)[1]


def mutual_knn_overlap(x, y, k: int = 10, *, metric: str = "cosine") -> jax.Array:
    """Mean over rows of ``|kNN_x(i) ∩ kNN_y(i)| / k`` (self excluded); ``[]``.

    Args:
        x: ``[n, d_x]``.
        y: ``[n, d_y]`` (same inputs, another representation).
        k: neighbours per row, ``1 ≤ k < n``.
        metric: ``"cosine"`` or ``"euclidean"``.
    """
    x, y = _check_same_rows(x, y, ("x", "y"))
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, n-1] = [1, {x.shape[0] - 1}], got {k}.")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}.")
    nx, ny = _neighbours(x, k, metric), _neighbours(y, k, metric)
    shared = jnp.sum(nx[:, :, None] == ny[:, None, :], axis=(1, 2))
    return jnp.mean(shared / k)


def orthogonal_procrustes_distance(x, y) -> jax.Array:
    """``2 − 2‖X̂ᵀŶ‖_*`` for centred, unit-Frobenius-norm ``x``, ``y``; ``[]`` in [0, 2]."""
    x, y = _check_same_rows(x, y, ("x", "y"))
    x, y = x - x.mean(0, keepdims=True), y - y.mean(0, keepdims=True)
    x, y = x / jnp.linalg.norm(x), y / jnp.linalg.norm(y)
    nuclear = jnp.sum(jnp.linalg.svd(jnp.matmul(x.T, y, precision=_HIGHEST),
                                     compute_uv=False))
    return 2.0 - 2.0 * nuclear
