"""Position rules for steering estimators: the core's :mod:`lrt_jax.positions`.

An estimator takes one ``[d_model]`` row per prompt; :func:`last_token`,
:func:`token_at` (e.g. at :func:`find_answer_letter_positions`, the CAA answer
letter) and :func:`masked_mean` choose it from ``[batch, seq, d_model]``
activations and the batch's mask. They live in the core so that
:func:`lrt_jax.capture_texts` reads the same positions; ``lrt_jax.steering``
re-exports them under their old names.
"""

from lrt_jax.positions import find_answer_letter_positions, last_token, masked_mean, token_at

__all__ = ["find_answer_letter_positions", "last_token", "masked_mean", "token_at"]
