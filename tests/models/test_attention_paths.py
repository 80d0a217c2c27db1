"""Every attention path against HF PyTorch, the cached decode step, gradients, memory, and the TPU kernel.

The paths (:mod:`lrt_jax.model._attention_kernels`) are chosen by
``config.execution.attention``. Here each one runs the tiny HF checkpoint of every
family on a left-padded batch longer than the sliding windows (4), with key blocks of
4 so that the blockwise path crosses several blocks: Gemma-2 soft-caps its logits
(dot_product falls back to blockwise there), Mistral, Qwen2 and Gemma-2 slide
windows. Splash runs in Pallas' interpreter on CPU (the kernel is the TPU one), and a
deviceless v5e compile checks that it lowers for TPU under a mesh.
"""

from __future__ import annotations

import dataclasses

import hf_models
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax.model import attention
from lrt_jax.model import init_params

import torch

TOLERANCE = 1e-5
SEQ = 10
PATHS = ("materialized", "blockwise", "dot_product")


def with_attention(config: lrt_jax.ModelConfig, path: str, block: int = 4) -> lrt_jax.ModelConfig:
    return config.replace(execution=dataclasses.replace(config.execution, attention=path, attention_block=block))


def left_padded_batch(seq: int = SEQ, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[2, seq]`` tokens and mask; row 0 is left-padded by 3, row 1 by 1."""
    tokens = np.random.default_rng(seed).integers(2, hf_models.VOCAB_SIZE, (2, seq))
    mask = np.ones((2, seq), np.int64)
    mask[0, :3] = mask[1, :1] = 0
    return np.where(mask == 1, tokens, 0), mask


def hf_logits(hf_model, tokens, mask) -> np.ndarray:
    positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)  # HF does not derive positions from the mask
    with torch.no_grad():
        return hf_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                        position_ids=torch.tensor(positions)).logits.numpy()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_every_path_matches_transformers_on_a_left_padded_batch(hf_and_lrt_models, family, path):
    hf_model, lm = hf_and_lrt_models(family)
    tokens, mask = left_padded_batch()
    lm = lm._replace(config=with_attention(lm.config, path))
    ours = np.asarray(lrt_jax.forward(lm, jnp.asarray(tokens), attention_mask=jnp.asarray(mask)))
    assert np.isfinite(ours).all()  # padding queries see no key at all; they must stay finite
    error = np.abs(ours - hf_logits(hf_model, tokens, mask))[mask.astype(bool)].max()
    assert error <= TOLERANCE, f"{family} {path}: max abs logit error {error:.2e}"


SPLASH_SEQ, SPLASH_BLOCK = 256, 128  # the kernel tiles by 128; two blocks each way


@pytest.mark.parametrize("family", [
    "gemma2",  # soft-capping, sliding windows, query_pre_attn_scalar
    "olmoe",  # one KV head (MQA), QK-norm
    pytest.param("llama", marks=pytest.mark.slow),
    pytest.param("mistral", marks=pytest.mark.slow),
])
def test_splash_kernel_matches_transformers(hf_and_lrt_models, family):
    hf_model, lm = hf_and_lrt_models(family, max_position_embeddings=2 * SPLASH_SEQ)
    tokens, mask = left_padded_batch(SPLASH_SEQ)
    config = with_attention(lm.config, "splash", SPLASH_BLOCK)
    assert attention.attention_path(config, SPLASH_SEQ, SPLASH_SEQ, cached=False) == "splash"
    real = mask.astype(bool)

    def logits(config):
        return np.asarray(lrt_jax.forward(lm._replace(config=config), jnp.asarray(tokens),
                                          attention_mask=jnp.asarray(mask)))

    ours, materialized = logits(config), logits(with_attention(lm.config, "materialized"))
    assert np.isfinite(ours).all()
    assert np.abs(ours - materialized)[real].max() <= TOLERANCE
    # At 256 tokens fp32 rounding alone puts the materialised path ~1e-5 from HF (llama: 1.1e-5);
    # splash must be no further from HF than that.
    expected = hf_logits(hf_model, tokens, mask)
    error, reference_error = (np.abs(x - expected)[real].max() for x in (ours, materialized))
    assert error <= max(TOLERANCE, reference_error + 1e-6), f"{family} splash: {error:.2e} vs {reference_error:.2e}"


CACHED_CASES = [("llama", "dot_product"), ("mistral", "blockwise"), ("gemma2", "blockwise"), ("gemma2", "splash")]
SLOW_CACHED_CASES = [("llama", "blockwise"), ("llama", "splash"), ("mistral", "dot_product"), ("mistral", "splash")]


@pytest.mark.parametrize("family, path", CACHED_CASES + [pytest.param(*case, marks=pytest.mark.slow)
                                                         for case in SLOW_CACHED_CASES])
def test_cached_generation_matches_the_materialized_path(hf_and_lrt_models, family, path):
    """Prefill and decode steps (one query against 17 cache slots, 5 key blocks) on a left-padded batch.

    Splash cannot run a cached call and falls back to blockwise there.
    """
    _, lm = hf_and_lrt_models(family, tie_word_embeddings=False)
    tokens, mask = left_padded_batch(7)

    def generated(config):
        out = lrt_jax.generate(lm._replace(config=config), tokens, attention_mask=mask.astype(bool), max_new_tokens=10,
                               pad_token_id=0, capture_sites=("logits", "layers.1.attn_out"))
        return np.asarray(out.tokens), {site: np.asarray(value) for site, value in out.activations.items()}

    reference_tokens, reference = generated(with_attention(lm.config, "materialized"))
    tokens_out, values = generated(with_attention(lm.config, path))
    np.testing.assert_array_equal(tokens_out, reference_tokens)
    for site in reference:
        assert np.abs(values[site] - reference[site]).max() <= TOLERANCE, site


def tiny_config(**changes) -> lrt_jax.ModelConfig:
    fields = dict(model_type="gemma2", vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  d_ff=48, sliding_window=5, layer_types=("sliding", "full"), attn_logit_softcap=2.0, query_scale=0.3)
    return lrt_jax.ModelConfig(**{**fields, **changes})


def test_blockwise_gradients_equal_the_materialized_gradients():
    config = tiny_config()
    params = init_params(config, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 13), 0, config.vocab_size)
    mask = jnp.ones((2, 13), bool).at[0, :4].set(False)

    def grads(path):
        def loss(p):
            logits = lrt_jax.run(with_attention(config, path), p, (tokens, mask)).logits
            return jnp.sum(jnp.where(mask[..., None], jax.nn.log_softmax(logits) ** 2, 0.0))
        return jax.grad(loss)(params)

    reference, blockwise = grads("materialized"), grads("blockwise")
    for expected, got in zip(jax.tree.leaves(reference), jax.tree.leaves(blockwise)):
        assert np.isfinite(np.asarray(got)).all()
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-5)


def compiled_temporaries(config, seq: int) -> int:
    params = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
    tokens = jax.ShapeDtypeStruct((1, seq), jnp.int32)
    mask = jax.ShapeDtypeStruct((1, seq), jnp.bool_)
    run = jax.jit(lambda p, t, m: lrt_jax.run(config, p, (t, m), sites="layers.0.resid_post").activations)
    return run.lower(params, tokens, mask).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_attention_never_holds_the_score_tensor():
    seq, block = 2048, 128
    config = tiny_config(n_layers=1, layer_types=None, sliding_window=None, attn_logit_softcap=None)
    scores = config.n_heads * seq * seq * 4  # one fp32 [b=1, kv, g, q, s] tensor: 64 MiB
    materialized = compiled_temporaries(with_attention(config, "materialized", block), seq)
    blockwise = compiled_temporaries(with_attention(config, "blockwise", block), seq)
    assert materialized >= scores
    assert blockwise <= scores / 16, (blockwise, scores)


def test_auto_picks_the_path_per_backend(monkeypatch):
    config = tiny_config()
    path = attention.attention_path
    assert path(with_attention(config, "auto", 512), 13, 13, cached=False) == "materialized"  # one block: as before
    long = with_attention(config, "auto", 128)
    assert path(long, 256, 256, cached=False) == "blockwise"  # CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert path(long, 256, 256, cached=False) == "blockwise"  # cuDNN cannot soft-cap
    assert path(long.replace(attn_logit_softcap=None), 256, 256, cached=False) == "dot_product"
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert path(long, 256, 256, cached=False) == "splash"
    assert path(long, 1, 256, cached=True) == "blockwise"  # a decode step
    assert path(long, 200, 200, cached=False) == "blockwise"  # not whole 128-blocks
    with pytest.raises(ValueError, match="Execution.attention='flash' is unknown"):
        path(with_attention(config, "flash"), 13, 13, cached=False)


@pytest.mark.parametrize("mesh_spec", [{"fsdp": 8}, pytest.param({"fsdp": 4, "tensor": 2}, marks=pytest.mark.slow)],
                         ids=["fsdp8", "fsdp4_tensor2"])
def test_splash_compiles_for_a_deviceless_v5e_under_a_mesh(mesh_spec):
    """Batch 8 × 2048 with soft-capping and a sliding layer; the kernel is a Mosaic custom call inside shard_map."""
    from lrt_jax._run import _capture
    from lrt_jax.parallel import make_mesh, param_shardings
    from lrt_jax.parallel.plan import topology_devices
    from lrt_jax.parallel.rules import batch_spec
    from jax.sharding import NamedSharding

    devices, _ = topology_devices("v5e:2x4")
    mesh = make_mesh(mesh_spec, devices=devices)
    batch, seq = 8, 2048
    config = lrt_jax.ModelConfig("gemma2", 1024, 512, 2, 8, 4, 128, 1024, max_position_embeddings=seq,
                                 attn_logit_softcap=50.0, sliding_window=256, layer_types=("sliding", "full"))

    def compile_capture(path):
        cfg = config.replace(execution=dataclasses.replace(config.execution, attention=path, mesh=mesh))
        abstract = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0), jnp.bfloat16))
        params = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s), abstract,
                              param_shardings(abstract, mesh))
        rows = NamedSharding(mesh, batch_spec(ndim=2))
        tokens = jax.ShapeDtypeStruct((batch, seq), jnp.int32, sharding=rows)
        mask = jax.ShapeDtypeStruct((batch, seq), jnp.bool_, sharding=rows)
        return _capture.lower(cfg, params, tokens, mask, (), ("layers.1.resid_post",), None).compile()

    splash = compile_capture("auto")
    assert "tpu_custom_call" in splash.as_text()
    materialized = compile_capture("materialized")
    scores_per_chip = batch // mesh.shape["fsdp"] * config.n_heads // mesh.shape["tensor"] * seq * seq * 4
    assert materialized.memory_analysis().temp_size_in_bytes >= scores_per_chip
    assert splash.memory_analysis().temp_size_in_bytes <= scores_per_chip / 2


@pytest.mark.parametrize("path", ["blockwise", "dot_product"])
def test_sharded_paths_equal_one_device(path):
    """On 8 CPU devices (batch over data × fsdp, heads over tensor) each path equals the unsharded materialised one."""
    from lrt_jax.parallel import make_mesh, shard_lm

    config = tiny_config(attn_logit_softcap=None if path == "dot_product" else 2.0)
    lm = lrt_jax.LM(config, init_params(config, jax.random.key(0)), None)
    tokens = jax.random.randint(jax.random.key(1), (4, 13), 0, config.vocab_size)
    mask = jnp.ones((4, 13), bool).at[0, :4].set(False)
    reference = lrt_jax.forward(lm._replace(config=with_attention(config, "materialized")), tokens, attention_mask=mask)
    sharded = shard_lm(lm._replace(config=with_attention(config, path)), make_mesh("data=2,fsdp=2,tensor=2"))
    assert sharded.config.execution.mesh is not None
    out = lrt_jax.forward(sharded, tokens, attention_mask=mask)
    np.testing.assert_allclose(np.asarray(out)[np.asarray(mask)], np.asarray(reference)[np.asarray(mask)], atol=TOLERANCE)
