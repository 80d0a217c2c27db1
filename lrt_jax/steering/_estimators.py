"""Closed-form direction estimators: difference of means and PCA of paired differences.

Both take activations already reduced to one position per prompt (see
:mod:`lrt_jax.steering._positions`), as ``[n, d_model]`` arrays: row ``i`` of
``acts_pos`` is prompt ``i`` completed with the behaviour-matching answer, row
``i`` of ``acts_neg`` the same prompt with the non-matching answer.

Every estimator returns a :class:`~lrt_jax.steering.SteeringVector` whose
:class:`~lrt_jax.steering.VectorInfo` records the method and the counts it was
computed from; where the activations came from (``model``, ``site``,
``position_rule``, ``dataset``) only the caller knows, so it passes them as
keywords. The counts and the width are shapes, static under ``jit``/``vmap``, so
the estimators trace: ``jax.vmap(diff_of_means)(pos [b, n, d], neg [b, m, d])``
is one :class:`SteeringVector` whose ``vector`` is ``[b, d]``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp

from lrt_jax.steering._checks import check_activations, check_nonempty, check_same_width
from lrt_jax.steering._vector import SteeringVector, VectorInfo


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where the activations of an estimate came from (all optional, recorded in the :class:`VectorInfo`)."""

    model: str = ""
    site: str = ""
    position_rule: str = ""
    dataset: str = ""

    def info(self, d_model: int, estimator: str, count: int, count_negative: int | None = None, *,
             normalisation: str = "none") -> VectorInfo:
        """The :class:`VectorInfo` of a ``d_model``-wide estimate from ``count`` (+ ``count_negative``) examples."""
        return VectorInfo(model=self.model, site=self.site, d_model=int(d_model), position_rule=self.position_rule,
                          estimator=estimator, normalisation=normalisation, dataset=self.dataset, count=int(count),
                          count_negative=None if count_negative is None else int(count_negative))


def diff_of_means(acts_pos, acts_neg, *, model: str = "", site: str = "", position_rule: str = "",
                  dataset: str = "") -> SteeringVector:
    """Contrastive activation addition (CAA) direction: ``mean(acts_pos) - mean(acts_neg)``.

    The two sets need not be paired or of equal size.

    Args:
      acts_pos: ``[n_pos, d_model]`` activations of behaviour-matching examples.
      acts_neg: ``[n_neg, d_model]`` activations of non-matching examples.
      model, site, position_rule, dataset: where the activations were read, recorded
        in the vector's info (e.g. ``site="layers.12.resid_post"``, ``position_rule="last_token"``).

    Returns:
      A :class:`SteeringVector`: the ``[d_model]`` unnormalised direction, with
      ``estimator="diff_of_means"``, ``count=n_pos`` and ``count_negative=n_neg``.

    Example:
      >>> v = diff_of_means(acts[labels == 1], acts[labels == 0], model=lm.name, site="layers.6.resid_post")
      >>> v.vector.shape, v.metadata.count
    """
    check_activations("acts_pos", acts_pos)
    check_activations("acts_neg", acts_neg)
    check_same_width("acts_pos", acts_pos, "acts_neg", acts_neg)
    check_nonempty("acts_pos", acts_pos)
    check_nonempty("acts_neg", acts_neg)
    direction = jnp.mean(jnp.asarray(acts_pos), axis=0) - jnp.mean(jnp.asarray(acts_neg), axis=0)
    source = Provenance(model, site, position_rule, dataset)
    return SteeringVector(direction, source.info(direction.shape[-1], "diff_of_means", jnp.shape(acts_pos)[0],
                                                 jnp.shape(acts_neg)[0]))


class PCAResult(NamedTuple):
    """Principal directions of paired differences.

    Attributes:
      components: a :class:`SteeringVector` holding a stack ``[k, d_model]`` of
        orthonormal rows, ordered by explained variance, each signed to have a
        non-negative dot product with the mean difference; :meth:`component` gives one.
      explained_variance: ``[k]`` variance (second moment when uncentered) of the
        differences along each component.
      explained_variance_ratio: ``[k]`` that variance over the total of all
        components, i.e. the share of the (centered or uncentered) spread.
    """

    components: SteeringVector
    explained_variance: jnp.ndarray
    explained_variance_ratio: jnp.ndarray

    def component(self, index: int) -> SteeringVector:
        """Component ``index`` as a ``[d_model]`` vector, its estimator suffixed ``[index]``."""
        info = self.components.metadata
        return SteeringVector(self.components.vector[index],
                              dataclasses.replace(info, estimator=f"{info.estimator}[{index}]"))


def pca_of_differences(acts_pos, acts_neg, k: int, *, center: bool, model: str = "", site: str = "",
                       position_rule: str = "", dataset: str = "") -> PCAResult:
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
      model, site, position_rule, dataset: recorded in the components' info, as in
        :func:`diff_of_means`.

    Returns:
      A :class:`PCAResult`; its components' estimator is
      ``"pca_of_differences(center=...)"`` and ``count`` is ``n``.
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
    source = Provenance(model, site, position_rule, dataset)
    return PCAResult(
        components=SteeringVector(components, source.info(d_model, f"pca_of_differences(center={center})", n)),
        explained_variance=variances[:k],
        explained_variance_ratio=variances[:k] / jnp.sum(variances),
    )
