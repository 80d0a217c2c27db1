"""Steering vectors: estimate, store, transfer between models, and compare by effect.

The path of a vector::

    acts [batch, seq, d_model] ──last_token / token_at / masked_mean──▶ [n, d_model]
        ──diff_of_means / pca_of_differences / probe_direction──▶ SteeringVector(vector [d_model], VectorInfo)
        ──save_vector / load_vector, save_gguf / load_gguf (llama.cpp control vectors),
          to_repeng / to_steering_vectors (and from_*)
        ──transfer_vector(vec, map_state, mode=...)──▶ SteeringVector in another model
        ──with_controls(vec, map_state, key=..., native=...)──▶ {native, transferred_*, unmapped, random}
        ──transfer_diagnostics(vec, mapped, native) / cosine_similarity──▶ how they compare

Conventions:

* Estimators take activations already reduced to one position per prompt,
  ``[n, d_model]``; contrastive rows are paired (row ``i`` of the positive and
  negative sets is the same prompt) where an estimator needs pairs.
* Every vector carries a :class:`VectorInfo` (model, site, width, position rule,
  estimator, normalisation, dataset, counts, transfer provenance), checked by
  :func:`check_vector_fits` before it is applied. Estimators record what they
  know (method, counts, width) and take ``model=``, ``site=``,
  ``position_rule=``, ``dataset=`` for the rest.
* :class:`SteeringVector` is a pytree: ``vector`` is its leaf and the info static
  data, so estimators and transfers run under ``jax.jit`` / ``jax.vmap``.
* A/B prompts end with ``"("``; the contrast examples append the answer letter
  and the activation is read at that letter (:func:`find_answer_letter_positions`).
* Effects are compared as propensity arrays ``[n_alphas, n_items]``
  (:func:`compare_propensities`).
"""

from lrt_jax.steering._comparison import (
    PropensityComparison,
    SteerabilitySlope,
    compare_propensities,
    mse_per_alpha,
    pearson_per_alpha,
    steerability_slope,
)
from lrt_jax.steering._gguf import load_gguf, save_gguf
from lrt_jax.steering._interop import from_repeng, from_steering_vectors, to_repeng, to_steering_vectors
from lrt_jax.steering._estimators import PCAResult, diff_of_means, pca_of_differences
from lrt_jax.steering._positions import find_answer_letter_positions, last_token, masked_mean, token_at
from lrt_jax.steering._probe import ProbeResult, probe_direction
from lrt_jax.steering._controls import random_vector_like, unmapped_vector, with_controls
from lrt_jax.steering._directions import TransferredProbe, transfer_probe
from lrt_jax.steering._transfer import (
    TransferDiagnostics,
    TransferMode,
    cosine_similarity,
    transfer_diagnostics,
    transfer_vector,
)
from lrt_jax.steering._vector import (
    SteeringVector,
    VectorInfo,
    VectorMismatchError,
    check_vector_destination,
    check_vector_fits,
    load_vector,
    save_vector,
)

__all__ = [
    "PCAResult",
    "ProbeResult",
    "PropensityComparison",
    "SteerabilitySlope",
    "SteeringVector",
    "TransferDiagnostics",
    "TransferMode",
    "VectorInfo",
    "VectorMismatchError",
    "check_vector_destination",
    "check_vector_fits",
    "compare_propensities",
    "cosine_similarity",
    "diff_of_means",
    "find_answer_letter_positions",
    "from_repeng",
    "from_steering_vectors",
    "last_token",
    "load_gguf",
    "load_vector",
    "masked_mean",
    "mse_per_alpha",
    "pca_of_differences",
    "pearson_per_alpha",
    "probe_direction",
    "random_vector_like",
    "save_gguf",
    "save_vector",
    "steerability_slope",
    "to_repeng",
    "to_steering_vectors",
    "token_at",
    "transfer_diagnostics",
    "transfer_probe",
    "transfer_vector",
    "TransferredProbe",
    "unmapped_vector",
    "with_controls",
]
