"""Closed-form direction estimators: difference of means and PCA of paired differences.

Both take activations already reduced to one position per prompt (see
:mod:`lrt_jax.steering._positions`), as ``[n, d_model]`` arrays: row ``i`` of
``acts_pos`` is prompt ``i`` completed with the behaviour-matching answer, row
``i`` of ``acts_neg`` the same prompt with the non-matching answer.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from lrt_jax.steering._checks import check_activations, check_nonempty, check_same_width


def diff_of_means(acts_pos, acts_neg) -> jnp.ndarray:
    """Contrastive activation addition (CAA) direction: ``mean(acts_pos) - mean(acts_neg)``.

    The two sets need not be paired or of equal size.

    Args:
      acts_pos: ``[n_pos, d_model]`` activations of behaviour-matching examples.
      acts_neg: ``[n_neg, d_model]`` activations of non-matching examples.

    Returns:
      ``[d_model]`` unnormalised steering direction.

    Example:
      >>> v = diff_of_means(acts[labels == 1], acts[labels == 0])
    """
    check_activations("acts_pos", acts_pos)
    check_activations("acts_neg", acts_neg)
    check_same_width("acts_pos", acts_pos, "acts_neg", acts_neg)
    check_nonempty("acts_pos", acts_pos)
    check_nonempty("acts_neg", acts_neg)
    return jnp.mean(jnp.asarray(acts_pos), axis=0) - jnp.mean(jnp.asarray(acts_neg), axis=0)


class PCAResult(NamedTuple):
    """Principal directions of paired differences.

    Attributes:
      components: ``[k, d_model]`` orthonormal rows, ordered by explained variance,
        each signed to have a non-negative dot product with the mean difference.
      explained_variance: ``[k]`` variance (second moment when uncentered) of the
        differences along each component.
      explained_variance_ratio: ``[k]`` that variance over the total of all
        components, i.e. the share of the (centered or uncentered) spread.
    """

    components: jnp.ndarray
    explained_variance: jnp.ndarray
    explained_variance_ratio: jnp.ndarray


def pca_of_differences(acts_pos, acts_neg, k: int, *, center: bool) -> PCAResult:
    """Top-``k`` principal directions of the paired differences ``acts_pos - acts_neg``.

    With ``D = acts_pos - acts_neg`` (``[n, d_model]``) and ``D̃ = D - mean(D)`` when
    ``center`` else ``D``, the components are the top right singular vectors of
    ``D̃`` and ``explained_variance = s² / (n - 1)`` when centered (sklearn's
    ``PCA`` convention) or ``s² / n`` when not (the mean squared projection).

    The centering choice changes the answer and is therefore required:

    * ``center=False`` keeps the shift shared by all pairs, so when the behaviour
      moves every pair the same way the first component is close to the
      normalised :func:`diff_of_means` (RepE-style reading vectors).
    * ``center=True`` removes that shift and finds the directions in which the
      pairs *vary*; use it to look for structure beyond the mean direction.

    Singular vectors have arbitrary sign; each component is flipped to point
    along the mean difference so that adding it steers towards the behaviour.

    Args:
      acts_pos: ``[n, d_model]`` behaviour-matching activations, paired row by row
        with ``acts_neg``.
      acts_neg: ``[n, d_model]`` non-matching activations.
      k: number of components, ``1 <= k <= min(n, d_model)``.
      center: subtract the mean difference before the decomposition.

    Returns:
      A :class:`PCAResult`.
    """
    check_activations("acts_pos", acts_pos)
    check_activations("acts_neg", acts_neg)
    if jnp.shape(acts_pos) != jnp.shape(acts_neg):
        raise ValueError(
            f"pca_of_differences needs paired rows: acts_pos has shape {jnp.shape(acts_pos)} "
            f"but acts_neg has shape {jnp.shape(acts_neg)}. Use diff_of_means for unpaired sets."
        )
    n, d_model = jnp.shape(acts_pos)
    if not 1 <= k <= min(n, d_model):
        raise ValueError(f"k={k} must be between 1 and min(n, d_model) = {min(n, d_model)}.")
    if center and n < 2:
        raise ValueError("center=True needs at least 2 pairs to estimate a variance.")

    differences = jnp.asarray(acts_pos) - jnp.asarray(acts_neg)
    mean_difference = jnp.mean(differences, axis=0)
    spread = differences - mean_difference[None, :] if center else differences
    _, singular_values, right_vectors = jnp.linalg.svd(spread, full_matrices=False)

    components = right_vectors[:k]
    # sign(0) would zero a component that is orthogonal to the mean difference.
    signs = jnp.where(components @ mean_difference < 0, -1.0, 1.0)
    components = components * signs[:, None]

    variances = singular_values**2 / (n - 1 if center else n)
    return PCAResult(
        components=components,
        explained_variance=variances[:k],
        explained_variance_ratio=variances[:k] / jnp.sum(variances),
    )
