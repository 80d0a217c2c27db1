"""Low-rank trajectory distillation: teach a direct-answer student the statistics of a reasoning teacher.

The teacher writes its reasoning out (chain of thought); its hidden states over the
reasoning tokens form a **trajectory** ``[n, layers, tokens, d_teacher]`` (``n`` items,
``mask [n, tokens]`` marking real reasoning tokens). The student answers at once and
never sees those tokens, so it cannot imitate them state by state; it is asked
instead to reproduce their low-order *statistics* in a small shared subspace.

1. **Subspace.** All real trajectory points of all items, layers and tokens are
   centred on their mean ``m [d]`` and decomposed by SVD; the basis ``U [d, k]`` holds
   the top ``k`` right singular vectors, with ``k`` the smallest rank whose cumulative
   explained variance ``Σ_{j≤k} σ_j² / Σ_j σ_j²`` reaches the threshold. Coordinates are
   ``(x − m) @ U``.
2. **Statistics.** Per item, over a set of points (a trajectory's real tokens, or the
   student's chosen positions): the mean ``μ [k]`` and the population covariance
   ``Σ = (1/c) Σ_p (z_p − μ)(z_p − μ)ᵀ [k, k]`` with ``c`` the number of real points.
3. **Readout.** Student states live in another width; a fixed ridge map
   ``[d_student] → [k]`` per student layer, fitted once on identical token sequences
   (student states against the teacher's subspace coordinates), reads them in teacher
   coordinates. It is frozen during training, so the student itself must move.
4. **Loss.** Per paired layer (student layer ``s`` against the teacher interpolated at
   relative depth, :mod:`lrt_jax.knowledge.layer_pairing`)::

       statistic_loss = mean_weight · mean_i ‖μ_s,i − μ_t,i‖² / k
                      + covariance_weight · mean_i ‖Σ_s,i − Σ_t,i‖²_F / k²

   (dividing by ``k`` and ``k²`` makes both terms per-entry mean squared errors, so the
   default weights ``1, 1`` balance them whatever ``k``), averaged over paired layers and
   added to the task loss: ``loss = task_cross_entropy + statistic_weight · statistic_loss``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrt_jax import mappers
from lrt_jax.config import ModelConfig
from lrt_jax._run import run
from lrt_jax.knowledge._training import optimize_trainable
from lrt_jax.knowledge.lora import LoraAdapter, merge_lora_adapters, next_token_cross_entropy
from lrt_jax._broadcast import lift


class TrajectorySubspace(NamedTuple):
    """Centre ``mean [d]``, orthonormal ``basis [d, k]`` and ``explained_variance_ratio [k]`` per direction."""

    mean: jax.Array
    basis: jax.Array
    explained_variance_ratio: jax.Array


def rank_for_explained_variance(singular_values: jax.Array, threshold: float) -> int:
    """Smallest ``k`` with ``Σ_{j≤k} σ_j² / Σ_j σ_j² ≥ threshold`` (``σ`` in decreasing order)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"explained-variance threshold must be in (0, 1]; got {threshold}.")
    variance = jnp.asarray(singular_values, jnp.float32) ** 2
    cumulative = jnp.cumsum(variance) / jnp.sum(variance)
    # A tolerance keeps threshold 1.0 reachable despite rounding in the cumulative sum.
    return int(jnp.argmax(cumulative >= threshold - 1e-6)) + 1


def fit_trajectory_subspace(trajectories: jax.Array, mask: jax.Array | None = None, *,
                            explained_variance: float = 0.9, max_rank: int | None = None) -> TrajectorySubspace:
    """The shared subspace of ``trajectories [n, layers, tokens, d]`` (real tokens where ``mask [n, tokens]``)."""
    if trajectories.ndim != 4:
        raise ValueError(f"trajectories must be [n, layers, tokens, d]; got shape {trajectories.shape}.")
    n, layers, tokens, width = trajectories.shape
    if mask is None:
        mask = jnp.ones((n, tokens), bool)
    keep = jnp.broadcast_to(jnp.asarray(mask, bool)[:, None, :], (n, layers, tokens)).reshape(-1)
    points = jnp.asarray(trajectories, jnp.float32).reshape(-1, width)[keep]
    mean = points.mean(axis=0)
    _, singular_values, right = jnp.linalg.svd(points - mean[None, :], full_matrices=False)
    rank = rank_for_explained_variance(singular_values, explained_variance)
    if max_rank is not None:
        rank = min(rank, max_rank)
    ratio = singular_values**2 / jnp.sum(singular_values**2)
    return TrajectorySubspace(mean, right[:rank].T, ratio[:rank])


def random_orthonormal_basis(key: jax.Array, width: int, rank: int) -> jax.Array:
    """A uniformly random ``[width, rank]`` matrix with orthonormal columns (a control for fitted bases)."""
    if not 0 < rank <= width:
        raise ValueError(f"rank {rank} must be in 1..{width}.")
    q, r = jnp.linalg.qr(jax.random.normal(key, (width, rank), jnp.float32))
    # Fixing the signs by diag(r) makes the distribution uniform (Haar), not QR-biased.
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def project_on_subspace(states: jax.Array, subspace: TrajectorySubspace) -> jax.Array:
    """Coordinates ``[..., k]`` of ``states [..., d]``: ``(states − mean) @ basis``."""
    if states.shape[-1] != subspace.basis.shape[0]:
        raise ValueError(f"states have width {states.shape[-1]}, the subspace lives in width {subspace.basis.shape[0]}.")
    return (states - lift(subspace.mean, states)) @ subspace.basis


def trajectory_statistics(coordinates: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-item mean ``[n, k]`` and population covariance ``[n, k, k]`` over the real points of ``coordinates [n, points, k]``."""
    weights = mask.astype(coordinates.dtype)[..., None]
    counts = jnp.sum(weights, axis=1)
    mean = jnp.sum(coordinates * weights, axis=1) / counts
    centred = (coordinates - mean[:, None, :]) * weights
    covariance = jnp.einsum("npi,npj->nij", centred, centred) / counts[..., None]
    return mean, covariance


def statistic_matching_loss(student_mean, student_covariance, teacher_mean, teacher_covariance, *,
                            mean_weight: float = 1.0, covariance_weight: float = 1.0) -> jax.Array:
    """``mean_weight · mean ‖Δμ‖²/k + covariance_weight · mean ‖ΔΣ‖²_F/k²`` over items (see module doc)."""
    rank = teacher_mean.shape[-1]
    mean_term = jnp.mean(jnp.sum((student_mean - teacher_mean) ** 2, axis=-1)) / rank
    covariance_term = jnp.mean(jnp.sum((student_covariance - teacher_covariance) ** 2, axis=(-2, -1))) / rank**2
    return mean_weight * mean_term + covariance_weight * covariance_term


class StudentReadout(NamedTuple):
    """Fixed affine maps, one per paired student layer: ``weight [layers, d_student, k]``, ``bias [layers, k]``."""

    weight: jax.Array
    bias: jax.Array


def fit_student_readout(student_states: jax.Array, teacher_coordinates: jax.Array, *,
                        ridge_alpha: float = 1e-2) -> StudentReadout:
    """Ridge maps from ``student_states [layers, N, d_student]`` to ``teacher_coordinates [layers, N, k]``."""
    states = [mappers.ridge(ridge_alpha).fit(x, y) for x, y in zip(student_states, teacher_coordinates)]
    return StudentReadout(jnp.stack([s.weight for s in states]), jnp.stack([s.bias for s in states]))


class TrajectoryDistillationBatch(NamedTuple):
    """Direct-answer documents and the teacher's statistics for the same items.

    Attributes:
      tokens, mask: int / bool ``[n, seq]`` the student's documents (task loss on all real pairs).
      point_mask: bool ``[n, seq]`` the student positions whose statistics are matched.
      teacher_mean: ``[layers, n, k]`` per paired student layer.
      teacher_covariance: ``[layers, n, k, k]``.
    """

    tokens: jax.Array
    mask: jax.Array
    point_mask: jax.Array
    teacher_mean: jax.Array
    teacher_covariance: jax.Array


@dataclasses.dataclass(frozen=True)
class TrajectoryDistillationLoss:
    """Which student sites are matched (one per paired layer) and the weights of the terms."""

    student_sites: tuple[str, ...]
    statistic_weight: float = 1.0
    mean_weight: float = 1.0
    covariance_weight: float = 1.0


def trajectory_distillation_loss(config: ModelConfig, params, readout: StudentReadout,
                                 batch: TrajectoryDistillationBatch, spec: TrajectoryDistillationLoss):
    """``(task CE + statistic_weight · mean over layers of statistic loss, parts)``."""
    logits, store = run(config, params, (batch.tokens, batch.mask), sites=spec.student_sites)
    task = next_token_cross_entropy(logits, batch.tokens, batch.mask)
    statistic_terms = []
    for index, site in enumerate(spec.student_sites):
        coordinates = store[site] @ readout.weight[index]
        coordinates = coordinates + lift(readout.bias[index], coordinates)
        mean, covariance = trajectory_statistics(coordinates, batch.point_mask)
        statistic_terms.append(statistic_matching_loss(
            mean, covariance, batch.teacher_mean[index], batch.teacher_covariance[index],
            mean_weight=spec.mean_weight, covariance_weight=spec.covariance_weight))
    statistic = jnp.mean(jnp.stack(statistic_terms))
    return task + spec.statistic_weight * statistic, {"task": task, "statistic": statistic}


def train_student_with_trajectory_statistics(
    config: ModelConfig, params, readout: StudentReadout,
    batch_for_step: Callable[[int], TrajectoryDistillationBatch], spec: TrajectoryDistillationLoss,
    optimizer: optax.GradientTransformation, steps: int, *,
    adapters: dict[str, LoraAdapter] | None = None, lora_scale: float = 1.0):
    """Train the student on :func:`trajectory_distillation_loss`: all ``params``, or only ``adapters`` when given.

    Returns:
      ``(trained params or adapters, history)`` with ``history["loss" | "task" | "statistic"] [steps]``.
    """
    trainable = params if adapters is None else adapters

    def loss_fn(trainable, batch):
        student = trainable if adapters is None else merge_lora_adapters(params, trainable, lora_scale)
        return trajectory_distillation_loss(config, student, readout, batch, spec)

    return optimize_trainable(loss_fn, trainable, optimizer, batch_for_step, steps)
