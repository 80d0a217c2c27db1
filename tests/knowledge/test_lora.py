"""LoRA adapters: merging by hand, adapter-only training, and the transfer losses against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from lrt_jax.config import ModelConfig
from lrt_jax.knowledge.lora import (
    LayerTransferBatch, LayerTransferLoss, init_lora_adapters, kl_to_teacher, layer_transfer_loss,
    masked_cosine_distance, merge_lora_adapters, next_token_cross_entropy, projection_kernel_paths,
    train_layer_with_lora)
from lrt_jax.model import init_params

CONFIG = ModelConfig(model_type="llama", vocab_size=11, d_model=8, n_layers=2, n_heads=2, n_kv_heads=1,
                     head_dim=4, d_ff=16, max_position_embeddings=16)
PATHS = projection_kernel_paths(1, ["attn/q_proj", "mlp/down_proj"])


@pytest.fixture(scope="module")
def params():
    return init_params(CONFIG, jax.random.key(0))


def flat(tree) -> dict:
    return traverse_util.flatten_dict(tree, sep="/")


def test_fresh_adapters_have_zero_b_and_leave_the_model_unchanged(params):
    adapters = init_lora_adapters(jax.random.key(1), params, PATHS, rank=2)
    assert PATHS == ("layers_1/attn/q_proj/kernel", "layers_1/mlp/down_proj/kernel")
    assert adapters[PATHS[0]].a.shape == (8, 2) and adapters[PATHS[0]].b.shape == (2, 8)
    assert adapters[PATHS[1]].a.shape == (16, 2) and adapters[PATHS[1]].b.shape == (2, 8)
    assert all(np.all(np.asarray(adapter.b) == 0) for adapter in adapters.values())
    assert np.max(np.abs(adapters[PATHS[1]].a)) <= 16**-0.5
    merged = flat(merge_lora_adapters(params, adapters, scale=3.0))
    for path, value in flat(params).items():
        np.testing.assert_array_equal(merged[path], value)


def test_merge_adds_scaled_low_rank_product_at_adapted_paths_only(params):
    rng = np.random.default_rng(0)
    adapters = {path: adapter._replace(b=jnp.asarray(rng.normal(size=adapter.b.shape), jnp.float32))
                for path, adapter in init_lora_adapters(jax.random.key(1), params, PATHS, rank=2).items()}
    merged, original = flat(merge_lora_adapters(params, adapters, scale=0.5)), flat(params)
    for path, value in original.items():
        if path in adapters:
            a, b = (np.asarray(x, np.float64) for x in adapters[path])
            np.testing.assert_allclose(merged[path], np.asarray(value) + 0.5 * a @ b, rtol=1e-5, atol=1e-6)
        else:
            assert merged[path] is value


def test_bad_paths_and_shapes_are_reported(params):
    with pytest.raises(KeyError, match="kernels of that layer"):
        init_lora_adapters(jax.random.key(0), params, ["layers_1/attn/x_proj/kernel"], rank=2)
    with pytest.raises(ValueError, match="rank 9"):
        init_lora_adapters(jax.random.key(0), params, PATHS, rank=9)


def test_losses_match_numpy():
    rng = np.random.default_rng(1)
    values, targets = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    mask = np.array([[True, True, False], [True, True, True]])
    cosine = np.sum(values * targets, -1) / np.linalg.norm(values, axis=-1) / np.linalg.norm(targets, axis=-1)
    np.testing.assert_allclose(masked_cosine_distance(jnp.asarray(values), jnp.asarray(targets), jnp.asarray(mask)),
                               1 - cosine[mask].mean(), rtol=1e-5)

    logits, teacher = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))
    tokens = np.array([[1, 4, 0], [2, 3, 4]])
    logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # Pairs (0→1) of row 0 and (0→1), (1→2) of row 1 are both real.
    expected_ce = -np.mean([logprobs[0, 0, 4], logprobs[1, 0, 3], logprobs[1, 1, 4]])
    np.testing.assert_allclose(next_token_cross_entropy(jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(mask)),
                               expected_ce, rtol=1e-5)
    teacher_logprobs = teacher - np.log(np.exp(teacher).sum(-1, keepdims=True))
    kl = np.sum(np.exp(teacher_logprobs) * (teacher_logprobs - logprobs), axis=-1)
    np.testing.assert_allclose(kl_to_teacher(jnp.asarray(logits), jnp.asarray(teacher), jnp.asarray(mask)),
                               kl[mask].mean(), rtol=1e-5)


def test_training_moves_only_the_adapters(params):
    before = jax.tree.map(np.array, params)  # host copies: the bit-exact reference
    adapters = init_lora_adapters(jax.random.key(1), params, PATHS, rank=2)
    rng = np.random.default_rng(2)
    batch = LayerTransferBatch(
        tokens=jnp.asarray(rng.integers(0, 11, size=(3, 6)), jnp.int32),
        mask=jnp.asarray(np.arange(6)[None, :] >= np.array([[0], [1], [2]])),
        target_activations=jnp.asarray(rng.normal(size=(3, 6, 8)), jnp.float32),
        teacher_logits=jnp.asarray(rng.normal(size=(3, 6, 11)), jnp.float32))
    spec = LayerTransferLoss(site="layers.1.resid_post", output_loss="kl_to_teacher")
    initial, _ = layer_transfer_loss(CONFIG, params, batch, spec)
    trained, history = train_layer_with_lora(CONFIG, params, adapters, lambda step: batch, spec,
                                             optax.adam(3e-2), steps=15, scale=2.0)
    assert history["loss"].shape == (15,) and history["loss"][0] == pytest.approx(float(initial), rel=1e-5)
    assert history["loss"][-1] < history["loss"][0]
    assert all(np.any(np.asarray(adapter.b) != 0) for adapter in trained.values())
    for path, value in flat(params).items():
        np.testing.assert_array_equal(value, flat(before)[path])
    merged = flat(merge_lora_adapters(params, trained, scale=2.0))
    changed = {path for path, value in flat(before).items() if not np.array_equal(merged[path], value)}
    assert changed == set(PATHS)
