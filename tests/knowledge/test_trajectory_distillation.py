"""Trajectory subspace, statistics and the statistic-matching loss against NumPy; student training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from lrt_jax.config import ModelConfig
from lrt_jax.knowledge.lora import init_lora_adapters, projection_kernel_paths
from lrt_jax.knowledge.trajectory_distillation import (
    TrajectoryDistillationBatch, TrajectoryDistillationLoss, fit_student_readout, fit_trajectory_subspace,
    project_on_subspace, random_orthonormal_basis, rank_for_explained_variance, statistic_matching_loss,
    train_student_with_trajectory_statistics, trajectory_statistics)
from lrt_jax.model import init_params


def test_rank_by_explained_variance_by_hand():
    # Variances 9, 4, 1 of 14: cumulative 0.643, 0.929, 1.
    singular_values = jnp.asarray([3.0, 2.0, 1.0])
    assert [rank_for_explained_variance(singular_values, t) for t in (0.5, 0.643, 0.9, 0.93, 1.0)] == [1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="threshold"):
        rank_for_explained_variance(singular_values, 0.0)


def test_subspace_is_the_masked_pca_of_all_trajectory_points():
    rng = np.random.default_rng(0)
    trajectories = rng.normal(size=(5, 3, 4, 6)) * np.array([5.0, 3.0, 1.0, 0.1, 0.1, 0.1])
    mask = np.arange(4)[None, :] < np.array([[4], [3], [2], [4], [1]])
    subspace = fit_trajectory_subspace(jnp.asarray(trajectories, jnp.float32), jnp.asarray(mask),
                                       explained_variance=0.95)
    points = trajectories.transpose(0, 2, 1, 3)[mask].reshape(-1, 6)  # [real tokens × layers, d]
    centred = points - points.mean(0)
    _, singular_values, right = np.linalg.svd(centred, full_matrices=False)
    ratio = singular_values**2 / np.sum(singular_values**2)
    rank = int(np.searchsorted(np.cumsum(ratio), 0.95) + 1)
    assert subspace.basis.shape == (6, rank)
    np.testing.assert_allclose(subspace.mean, points.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(subspace.explained_variance_ratio, ratio[:rank], rtol=1e-4)
    # Singular vectors are defined up to sign: compare projectors.
    np.testing.assert_allclose(subspace.basis @ subspace.basis.T, right[:rank].T @ right[:rank], atol=1e-4)
    np.testing.assert_allclose(project_on_subspace(jnp.asarray(points, jnp.float32), subspace),
                               centred @ np.asarray(subspace.basis), rtol=1e-4, atol=1e-4)
    assert fit_trajectory_subspace(jnp.asarray(trajectories, jnp.float32), explained_variance=1.0,
                                   max_rank=2).basis.shape == (6, 2)


def test_statistics_are_masked_means_and_population_covariances():
    rng = np.random.default_rng(1)
    coordinates = rng.normal(size=(3, 5, 2))
    mask = np.arange(5)[None, :] < np.array([[5], [2], [3]])
    mean, covariance = trajectory_statistics(jnp.asarray(coordinates), jnp.asarray(mask))
    for item in range(3):
        real = coordinates[item][mask[item]]
        np.testing.assert_allclose(mean[item], real.mean(0), rtol=1e-5)
        np.testing.assert_allclose(covariance[item], np.cov(real, rowvar=False, bias=True), rtol=1e-4, atol=1e-6)


def test_statistic_matching_loss_by_hand():
    # k = 2, two items: mean errors ‖(1, 0)‖² = 1 and ‖(0, 2)‖² = 4; covariance errors 1 and 0.
    teacher_mean, student_mean = jnp.zeros((2, 2)), jnp.asarray([[1.0, 0.0], [0.0, 2.0]])
    teacher_covariance = jnp.zeros((2, 2, 2))
    student_covariance = jnp.asarray([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    loss = statistic_matching_loss(student_mean, student_covariance, teacher_mean, teacher_covariance,
                                   mean_weight=2.0, covariance_weight=3.0)
    np.testing.assert_allclose(loss, 2.0 * (1 + 4) / 2 / 2 + 3.0 * (1 + 0) / 2 / 4, rtol=1e-6)


def test_random_basis_is_orthonormal_and_readout_recovers_a_linear_map():
    basis = random_orthonormal_basis(jax.random.key(0), 7, 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-5)
    rng = np.random.default_rng(2)
    states = rng.normal(size=(2, 50, 4))
    weight, bias = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 3))
    targets = np.einsum("lnd,ldk->lnk", states, weight) + bias[:, None]
    readout = fit_student_readout(jnp.asarray(states, jnp.float32), jnp.asarray(targets, jnp.float32),
                                  ridge_alpha=1e-6)
    np.testing.assert_allclose(readout.weight, weight, atol=1e-3)
    np.testing.assert_allclose(readout.bias, bias, atol=1e-3)


def test_student_training_all_parameters_and_lora_only():
    config = ModelConfig(model_type="llama", vocab_size=9, d_model=8, n_layers=2, n_heads=2, n_kv_heads=1,
                         head_dim=4, d_ff=16, max_position_embeddings=16)
    params = init_params(config, jax.random.key(0))
    rng = np.random.default_rng(3)
    batch = TrajectoryDistillationBatch(
        tokens=jnp.asarray(rng.integers(0, 9, size=(4, 5)), jnp.int32), mask=jnp.ones((4, 5), bool),
        point_mask=jnp.asarray(np.arange(5)[None, :] >= 2).repeat(4, 0),
        teacher_mean=jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32),
        teacher_covariance=jnp.asarray(np.eye(3)[None, None].repeat(4, 1).repeat(2, 0), jnp.float32))
    readout = fit_student_readout(jnp.asarray(rng.normal(size=(2, 20, 8)), jnp.float32),
                                  jnp.asarray(rng.normal(size=(2, 20, 3)), jnp.float32))
    spec = TrajectoryDistillationLoss(student_sites=("layers.0.resid_post", "layers.1.resid_post"),
                                      statistic_weight=5.0)
    trained, history = train_student_with_trajectory_statistics(config, params, readout, lambda step: batch, spec,
                                                                optax.adam(1e-2), steps=10)
    assert set(history) == {"loss", "task", "statistic"}
    assert history["loss"][-1] < history["loss"][0]
    assert history["statistic"][-1] < history["statistic"][0]

    before = jax.tree.map(np.array, params)
    adapters = init_lora_adapters(jax.random.key(1), params, projection_kernel_paths(1, ["mlp/up_proj"]), rank=2)
    trained_adapters, _ = train_student_with_trajectory_statistics(
        config, params, readout, lambda step: batch, spec, optax.adam(1e-2), steps=3, adapters=adapters)
    assert set(trained_adapters) == {"layers_1/mlp/up_proj/kernel"}
    for path, value in traverse_util.flatten_dict(params, sep="/").items():
        np.testing.assert_array_equal(value, traverse_util.flatten_dict(before, sep="/")[path])
