"""Sparse MoE dispatch equals the dense one and HF; fine MLP sites against HF hooks and per-expert recomputation.

The sparse path (tokens sorted by expert, grouped matmuls, no capacity) must give
HF's numbers in fp32 on tiny models of every MoE family, alone and sharded over
meshes that split the experts' width, their index, the batch, or all of them.
``layers.{i}.moe.expert_out`` is checked against NumPy recomputing each chosen expert
from HF's own fused expert weights, ``layers.{i}.mlp.hidden`` against a forward
pre-hook on HF's down projection.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import hf_models
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import lrt_jax
from lrt_jax import parallel
from lrt_jax.loading import load
from lrt_jax.model.mlp import moe_dispatch, routing

MOE_FAMILIES = ("mixtral", "olmoe", "qwen2_moe")
DENSE_FAMILIES = ("llama", "gemma2", "gpt2", "gpt_neox")
SEQ = 10


@functools.cache
def models(family: str, directory: str):
    hf_models.save_tiny_hf_model(family, directory)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return hf_model, load(directory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return lambda family: str(tmp_path_factory.getbasetemp() / f"moe-{family}")


def with_execution(lm, **fields):
    return lm._replace(config=lm.config.replace(execution=dataclasses.replace(lm.config.execution, **fields)))


def tokens_and_mask():
    tokens = np.random.default_rng(0).integers(2, hf_models.VOCAB_SIZE, (2, SEQ))
    mask = np.ones((2, SEQ), np.int64)
    mask[0, :3] = 0
    return np.where(mask == 1, tokens, 0), mask


def hf_logits(hf_model, tokens, mask, hooks=()):
    positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)
    handles = [module.register_forward_pre_hook(hook) for module, hook in hooks]
    try:
        with torch.no_grad():
            return hf_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                            position_ids=torch.tensor(positions)).logits.numpy()
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_sparse_and_dense_dispatch_equal_hf(family, model_dir):
    hf_model, lm = models(family, model_dir(family))
    tokens, mask = tokens_and_mask()
    reference = hf_logits(hf_model, tokens, mask)
    real = mask.astype(bool)
    sites = ["layers.1.router_logits", "layers.0.mlp_out", "layers.1.resid_post"]
    captured = {}
    for dispatch in ("dense", "sparse"):
        model = with_execution(lm, moe=dispatch)
        assert moe_dispatch(model.config) == dispatch
        logits = np.asarray(lrt_jax.forward(model, tokens, attention_mask=mask))
        np.testing.assert_allclose(logits[real], reference[real], atol=1e-5, rtol=0)
        captured[dispatch] = lrt_jax.capture(model, tokens, sites, attention_mask=mask)
    for site in sites:
        np.testing.assert_allclose(np.asarray(captured["sparse"][site]), np.asarray(captured["dense"][site]),
                                   atol=1e-5, rtol=0)


def test_auto_is_dense_on_cpu_and_sparse_on_a_tpu_mesh(model_dir):
    from jax.experimental import topologies

    _, lm = models("mixtral", model_dir("mixtral"))
    assert jax.default_backend() == "cpu" and moe_dispatch(lm.config) == "dense"
    assert moe_dispatch(parallel.shard_lm(lm, parallel.make_mesh("fsdp=8")).config) == "dense"
    # several test processes may hold libtpu at once
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    tpu = parallel.make_mesh("fsdp=8", devices=list(topologies.get_topology_desc("v5e:2x4", "tpu").devices))
    assert moe_dispatch(lm.config.replace(execution=dataclasses.replace(lm.config.execution, mesh=tpu))) == "sparse"


EXPERTS_OVER_FSDP = tuple((name, "fsdp" if name == "experts" else None if name == "expert_mlp" else axes)
                          for name, axes in parallel.DEFAULT_RULES)


@pytest.mark.parametrize("spec,rules", [
    ("fsdp=8", parallel.DEFAULT_RULES),                      # width split over fsdp: tokens gathered
    ("data=2,fsdp=2,tensor=2", parallel.DEFAULT_RULES),      # over fsdp × tensor, batch over data × fsdp
    ("tensor=8", parallel.DEFAULT_RULES),                    # width over tensor: partial sums, no gather
    ("data=2,fsdp=4", EXPERTS_OVER_FSDP),                    # expert index over fsdp (4 experts, one each)
], ids=["fsdp", "3d", "tensor", "experts"])
def test_sharded_sparse_dispatch_equals_one_device(spec, rules, model_dir):
    _, lm = models("qwen2_moe", model_dir("qwen2_moe"))
    tokens, mask = tokens_and_mask()
    tokens, mask = np.tile(tokens, (4, 1)), np.tile(mask, (4, 1))
    reference = lrt_jax.capture(with_execution(lm, moe="dense"), tokens, ["logits", "layers.1.mlp_out"],
                                attention_mask=mask)
    mesh = parallel.make_mesh(spec)
    sharded = parallel.shard_lm(with_execution(lm, moe="sparse"), mesh, rules)
    assert moe_dispatch(sharded.config) == "sparse"
    if rules is EXPERTS_OVER_FSDP:
        kernel = sharded.params["layers_0"]["moe"]["gate_proj"]
        assert set(parallel.local_shard_shapes(kernel)) == {(1, *kernel.shape[1:])}
    out = lrt_jax.capture(sharded, parallel.shard_batch(tokens, mesh), ["logits", "layers.1.mlp_out"],
                          attention_mask=parallel.shard_batch(mask, mesh))
    for site in out:
        np.testing.assert_allclose(np.asarray(out[site]), np.asarray(reference[site]), atol=1e-5, rtol=0)


def test_sparse_dispatch_composes_with_grad_and_vmap(model_dir):
    _, lm = models("mixtral", model_dir("mixtral"))
    tokens, mask = tokens_and_mask()

    def loss(params, config):
        return jnp.sum(lrt_jax.run(config, params, (tokens, mask)).logits ** 2)

    grads = {d: jax.grad(loss)(lm.params, with_execution(lm, moe=d).config) for d in ("dense", "sparse")}
    for a, b in zip(jax.tree.leaves(grads["dense"]), jax.tree.leaves(grads["sparse"])):
        scale = float(np.max(np.abs(np.asarray(a)))) or 1.0
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5 * scale, rtol=0)
    sparse = with_execution(lm, moe="sparse").config
    batched = jax.vmap(lambda t: lrt_jax.run(sparse, lm.params, t[None]).logits[0])(jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(batched), np.asarray(lrt_jax.run(sparse, lm.params, tokens).logits),
                               atol=1e-5, rtol=0)


def hf_expert_outputs(hf_model, layer: int, tokens, mask, top_k: int):
    """Each token's top-k expert outputs, recomputed in NumPy from HF's fused expert weights and the block's input."""
    block = hf_model.model.layers[layer].mlp
    inputs = []
    hf_logits(hf_model, tokens, mask, hooks=[(block, lambda module, args: inputs.append(args[0]))])
    x = inputs[0].numpy()
    router = x @ block.gate.weight.detach().numpy().T
    probs = np.exp(router - router.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    chosen = np.argsort(-probs, axis=-1, kind="stable")[..., :top_k]
    gate_up = block.experts.gate_up_proj.detach().numpy()  # [E, 2f, d]: gate rows, then up rows
    down = block.experts.down_proj.detach().numpy()  # [E, d, f]
    f = down.shape[-1]
    out = np.zeros((*x.shape[:2], top_k, x.shape[-1]), np.float32)
    for b, t, j in np.ndindex(*chosen.shape):
        e = chosen[b, t, j]
        gate, up = gate_up[e, :f] @ x[b, t], gate_up[e, f:] @ x[b, t]
        out[b, t, j] = down[e] @ (gate / (1 + np.exp(-gate)) * up)
    return out, chosen


@pytest.mark.parametrize("family", MOE_FAMILIES)
@pytest.mark.parametrize("dispatch", ["dense", "sparse"])
def test_expert_out_equals_a_per_expert_recomputation(family, dispatch, model_dir):
    hf_model, lm = models(family, model_dir(family))
    lm = with_execution(lm, moe=dispatch)
    tokens, mask = tokens_and_mask()
    expected, chosen = hf_expert_outputs(hf_model, 1, tokens, mask, lm.config.top_k)
    got = lrt_jax.capture(lm, tokens, ["layers.1.moe.expert_out", "layers.1.router_logits"], attention_mask=mask)
    real = mask.astype(bool)
    assert got["layers.1.moe.expert_out"].shape == (2, SEQ, lm.config.top_k, lm.config.d_model)
    np.testing.assert_allclose(np.asarray(got["layers.1.moe.expert_out"])[real], expected[real], atol=1e-5, rtol=0)
    _, indices = routing(lm.config, got["layers.1.router_logits"])
    np.testing.assert_array_equal(np.asarray(indices)[real], chosen[real])
    # Reading the site does not change the layer's output.
    plain = lrt_jax.capture(lm, tokens, ["layers.1.mlp_out"], attention_mask=mask)
    both = lrt_jax.capture(lm, tokens, ["layers.1.mlp_out", "layers.1.moe.expert_out"], attention_mask=mask)
    np.testing.assert_allclose(np.asarray(both["layers.1.mlp_out"]), np.asarray(plain["layers.1.mlp_out"]), atol=1e-6)


def test_rewriting_expert_out_reweights_the_layer_output(model_dir):
    _, lm = models("mixtral", model_dir("mixtral"))  # no shared expert: mlp_out = Σ_k w_k · expert_out_k
    tokens, mask = tokens_and_mask()
    site = "layers.0.moe.expert_out"
    base = lrt_jax.capture(lm, tokens, ["layers.0.mlp_out", "layers.0.router_logits", site], attention_mask=mask)
    weights, _ = routing(lm.config, base["layers.0.router_logits"])
    np.testing.assert_allclose(np.asarray(base["layers.0.mlp_out"]),
                               np.einsum("btkd,btk->btd", np.asarray(base[site]), np.asarray(weights)), atol=1e-6)
    halved = lrt_jax.capture(lm, tokens, ["layers.0.mlp_out"], attention_mask=mask,
                             interventions=[lrt_jax.interventions.Scale(site, 0.5)])
    real = mask.astype(bool)  # interventions touch real tokens only
    np.testing.assert_allclose(np.asarray(halved["layers.0.mlp_out"])[real],
                               0.5 * np.asarray(base["layers.0.mlp_out"])[real], atol=1e-6)


def test_residual_sites_compile_to_the_program_without_fine_sites(model_dir):
    _, lm = models("mixtral", model_dir("mixtral"))
    tokens, mask = tokens_and_mask()

    def program(config, sites):
        return jax.jit(lambda p: lrt_jax.run(config, p, (tokens, mask), sites=sites).activations).lower(
            lm.params).as_text()

    sites = ["layers.0.resid_post", "layers.1.resid_post"]
    assert program(lm.config, sites) == program(lm.config.replace(execution=lrt_jax.Execution()), sites)
    assert program(lm.config, sites) != program(lm.config, [*sites, "layers.0.moe.expert_out"])


DOWN_PROJ = {"llama": "down_proj", "gemma2": "down_proj", "gpt2": "c_proj", "gpt_neox": "dense_4h_to_h"}


@pytest.mark.parametrize("family", DENSE_FAMILIES)
def test_mlp_hidden_equals_the_hf_down_projection_input(family, model_dir):
    hf_model, lm = models(family, model_dir(family))
    tokens, mask = tokens_and_mask()
    layers = getattr(hf_model.base_model, "layers", None) or hf_model.base_model.h
    seen = []
    hf_logits(hf_model, tokens, mask, hooks=[(getattr(layers[1].mlp, DOWN_PROJ[family]),
                                              lambda module, args: seen.append(args[0].numpy()))])
    got = lrt_jax.capture(lm, tokens, ["layers.1.mlp.hidden"], attention_mask=mask)["layers.1.mlp.hidden"]
    assert got.shape == (2, SEQ, lm.config.d_ff)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(got)[real], seen[0][real], atol=1e-5, rtol=0)


def test_fine_sites_are_refused_where_the_model_has_none(model_dir):
    _, dense = models("llama", model_dir("llama"))
    _, moe = models("mixtral", model_dir("mixtral"))
    tokens, _ = tokens_and_mask()
    with pytest.raises(lrt_jax.sites.UnknownSiteError, match="mixture-of-experts"):
        lrt_jax.capture(dense, tokens, ["layers.0.moe.expert_out"])
    with pytest.raises(lrt_jax.sites.UnknownSiteError, match="expert_out instead"):
        lrt_jax.capture(moe, tokens, ["layers.0.mlp.hidden"])
    assert "layers.0.mlp.hidden" not in lrt_jax.sites.all_sites(dense.config)
    assert "layers.0.mlp.hidden" in lrt_jax.sites.all_sites(dense.config, fine=True)


def test_sparse_dispatch_keeps_interventions_and_generation(model_dir):
    _, lm = models("qwen2_moe", model_dir("qwen2_moe"))
    tokens, mask = tokens_and_mask()
    vector = np.random.default_rng(1).normal(size=lm.config.d_model).astype(np.float32)
    edits = [lrt_jax.interventions.Add("layers.0.resid_post", vector, 2.0, positions="last"),
             lrt_jax.interventions.Scale("layers.1.moe.expert_out", 0.5)]
    outputs = {}
    for dispatch in ("dense", "sparse"):
        model = with_execution(lm, moe=dispatch)
        logits = lrt_jax.forward(model, tokens, attention_mask=mask, interventions=edits)
        generation = lrt_jax.generate(model, tokens, attention_mask=mask, max_new_tokens=4,
                                      capture_sites=["layers.1.mlp_out", "layers.1.moe.expert_out"])
        outputs[dispatch] = logits, generation
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(outputs["sparse"][0])[real], np.asarray(outputs["dense"][0])[real],
                               atol=1e-5, rtol=0)
    dense, sparse = outputs["dense"][1], outputs["sparse"][1]
    np.testing.assert_array_equal(np.asarray(sparse.tokens), np.asarray(dense.tokens))
    k, d = lm.config.top_k, lm.config.d_model
    assert sparse.activations["layers.1.moe.expert_out"].shape == (2, 4, k * d)  # stored flattened
    for site in sparse.activations:
        np.testing.assert_allclose(np.asarray(sparse.activations[site]), np.asarray(dense.activations[site]),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("site", ["layers.1.moe.expert_out", "layers.1.attn.z"])
def test_fine_sites_reduce_like_residual_sites(site, model_dir):
    _, lm = models("mixtral", model_dir("mixtral"))
    tokens, mask = tokens_and_mask()
    full = np.asarray(lrt_jax.capture(lm, tokens, [site], attention_mask=mask)[site])
    last = np.asarray(lrt_jax.capture(lm, tokens, [site], attention_mask=mask, reduce="last")[site])
    mean = np.asarray(lrt_jax.capture(lm, tokens, [site], attention_mask=mask, reduce="mean")[site])
    last_index = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    np.testing.assert_allclose(last, full[np.arange(2), last_index], atol=1e-6)
    expected_mean = np.stack([full[row][mask[row].astype(bool)].mean(axis=0) for row in range(2)])
    np.testing.assert_allclose(mean, expected_mean, atol=1e-5)
    with pytest.raises(ValueError, match="reduce=None"):
        lrt_jax.capture(lm, tokens, ["layers.1.attn.pattern"], attention_mask=mask, reduce="last")
