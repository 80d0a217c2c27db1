"""Steering vectors: estimate, store, transfer between models, and compare by effect.

The path of a vector::

    acts [batch, seq, d_model] ──last_token / token_at / masked_mean──▶ [n, d_model]
        ──diff_of_means / pca_of_differences / probe_direction──▶ [d_model]
        ──SteeringVector(vector, VectorInfo(...))──▶ save_vector / load_vector
                                                    save_gguf / load_gguf (llama.cpp control vectors)
                                                    to_repeng / to_steering_vectors (and from_*)
        ──transfer_vector(vec, map_state, mode=...)──▶ vector in another model

Conventions:

* Estimators take activations already reduced to one position per prompt,
  ``[n, d_model]``; contrastive rows are paired (row ``i`` of the positive and
  negative sets is the same prompt) where an estimator needs pairs.
* Every vector carries a :class:`VectorInfo` (model, site, width, position rule,
  estimator, normalisation, dataset, count, transfer provenance), checked by
  :func:`check_vector_fits` before it is applied.
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
from lrt_jax.steering._transfer import (
    TransferMode,
    TransferResult,
    cosine_similarity,
    random_vector_like,
    transfer_vector,
    unmapped_vector,
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
