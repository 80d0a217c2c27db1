"""A grid of steering settings — every vector × every α — as one compiled, vmapped call.

A scorer runs the model once per setting ``Add(site, vectors[k], alphas[a])``. The
vector and the strength are leaves of the :class:`~lrt_jax.interventions.Add` pytree,
so two nested ``jax.vmap`` (vectors outside, alphas inside) turn ``k × a`` forward
passes into one call whose outputs carry two leading axes ``[k, a, ...]``.

Only what a scorer needs leaves the compiled function. The decoder's own logits
cover every position and the whole vocabulary (``[k, a, batch, seq, vocab]`` under
the grid, and XLA does not slice the head's matmul), so scorers read the
``final_norm`` site instead, pick the few positions they score and unembed just those
with :func:`lrt_jax.model.unembed`; the unused head is then dead code that XLA removes.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import numpy as np

from lrt_jax.config import ModelConfig
from lrt_jax._run import run
from lrt_jax._intervention_checks import check_interventions
from lrt_jax.interventions import Add
from lrt_jax.lm import LM
from lrt_jax.results import ResultRecord
from lrt_jax.sites import check_site, site_width
from lrt_jax.steering import SteeringVector, check_vector_fits

UNSTEERED = "unsteered"  # the vector name recorded for runs without steering (α is then 0)


def final_hidden_states(config: ModelConfig, params, tokens, mask, steering: Add | None) -> jax.Array:
    """``final_norm`` values ``[batch, seq, d_model]`` of a (steered) pass; traceable, not jitted."""
    interventions = () if steering is None else (steering,)
    return run(config, params, (tokens, mask), interventions=interventions, sites=("final_norm",)).activations[
        "final_norm"]


def over_steering_grid(score: Callable[[Add | None], jax.Array], vectors, alphas, *, site: str, positions,
                       normalize) -> jax.Array:
    """``score(Add(site, vectors[k], alphas[a]))`` for every ``k, a``, stacked as ``[k, a, ...]``.

    With ``vectors=None`` the model runs unsteered once and the result is ``[1, 1, ...]``.
    """
    if vectors is None:
        return score(None)[None, None]

    def score_one(vector, alpha):
        return score(Add(site, vector, alpha, positions=positions, normalize=normalize))

    over_alphas = jax.vmap(score_one, in_axes=(None, 0))
    return jax.vmap(over_alphas, in_axes=(0, None))(vectors, alphas)


def named_vector_stack(lm: LM, vectors: Mapping[str, SteeringVector | object] | None, site: str | None
                       ) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Names and the float32 stack ``[k, d_model]`` of ``vectors``, checked against ``site`` of ``lm``.

    Args:
      lm: the model the vectors will steer.
      vectors: ``{name: SteeringVector or [d_model] array}``, or ``None`` for no steering.
      site: where they are added; required with vectors.

    Returns:
      ``(names, stack)``; ``((UNSTEERED,), None)`` without vectors.
    """
    if vectors is None:
        return (UNSTEERED,), None
    if not vectors:
        raise ValueError("vectors is empty; pass {name: vector, ...} or vectors=None for an unsteered run.")
    if site is None:
        raise ValueError("Steering needs site=..., the site the vectors are added at, e.g. 'layers.12.resid_post'.")
    width = site_width(lm.config, check_site(lm.config, site))
    arrays = []
    for name, vector in vectors.items():
        if isinstance(vector, SteeringVector):
            check_vector_fits(vector, site=site, d_model=width)
            vector = vector.vector
        if np.shape(vector) != (width,):
            raise ValueError(f"vector {name!r} has shape {np.shape(vector)}; site {site!r} needs [{width}].")
        arrays.append(np.asarray(vector, np.float32))
    return tuple(vectors), np.stack(arrays)


def check_steering_grid(lm: LM, vectors, alphas, *, site, positions, normalize, batch: int, seq: int
                        ) -> np.ndarray:
    """Validate one setting of the grid like :func:`lrt_jax.forward` would; returns ``alphas`` as float32 ``[a]``.

    Every setting has the same site, positions and normalisation, so checking the first
    vector with each α covers the structure, and all vectors are checked for NaN here.
    """
    if vectors is None:
        return np.zeros((1,), np.float32)
    alphas = np.asarray(alphas, np.float32)
    if alphas.ndim != 1 or alphas.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-d sequence of strengths; got shape {alphas.shape}.")
    if not np.all(np.isfinite(vectors)) or not np.all(np.isfinite(alphas)):
        raise ValueError("vectors and alphas must be finite; check how the vectors were estimated or loaded.")
    check_interventions(lm.config, Add(site, vectors[0], alphas[0], positions=positions, normalize=normalize),
                        batch=batch, slots=seq, allow_generated=False)
    return alphas



def records_from_grid(values, *, task: str, model: str, vector_names, alphas, items, metric: str) -> list:
    """Tidy :class:`~lrt_jax.results.ResultRecord` rows from ``values [k, a, n_items]``."""
    values = np.asarray(values)
    return [
        ResultRecord(task, model, name, float(alpha), int(item), metric, float(values[k, a, i]))
        for k, name in enumerate(vector_names)
        for a, alpha in enumerate(alphas)
        for i, item in enumerate(items)
    ]
