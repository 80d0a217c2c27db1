"""Scanned layers (``execution.scan_layers``) against the unrolled decoder and HF PyTorch.

References: the unrolled decoder (itself checked against transformers in
``tests/models``), transformers' own logits and greedy ``generate`` on the same tiny
checkpoints, and XLA's compiled program (while loops, flops) for what is computed.
Tiny models get 4 layers here so that Gemma-2's sliding/global pair repeats and is
scanned as a period of two.
"""

from __future__ import annotations

import dataclasses
import functools

import hf_models
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax import generate
from lrt_jax._run import _capture, run
from lrt_jax.interventions import Ablate, Add, Mix, Replace, Scale
from lrt_jax.model import Decoder, ScanCache, empty_cache, stack_layers, unstack_layers
from lrt_jax.model.scan import layer_period, scanned_by_default
from lrt_jax.sites import all_sites

import torch

LAYERS = 4
# Scanned and unrolled layers are the same arithmetic, but XLA fuses a loop body differently from
# straight-line code, and how depends on the CPU: 16 float32 ulps of each site's scale (on one CPU
# here gemma2's and olmoe's layers.3.mlp_out differ by 8.8 ulps).
EXACT = 16 * float(np.finfo(np.float32).eps)
HF_TOLERANCE = 1e-4


def scanned(lm, **execution):
    config = lm.config.replace(execution=dataclasses.replace(lm.config.execution, scan_layers=True, **execution))
    return lm._replace(config=config)


@pytest.fixture
def models(hf_and_lrt_models):
    """``models(family) -> (hf_model, lm unrolled, lm scanned)``, 4 layers, Gemma-2 untied (see test_generate)."""

    def make(family):
        overrides = {"num_hidden_layers": LAYERS} if family not in ("gpt2",) else {"n_layer": LAYERS}
        if family == "gemma2":
            overrides["tie_word_embeddings"] = False
        hf_model, lm = hf_and_lrt_models(family, **overrides)
        assert not lm.config.execution.scan_layers and lm.config.n_layers == LAYERS
        return hf_model, lm, scanned(lm)

    return make


def left_padded(seq: int = 9, batch: int = 3, seed: int = 1):
    tokens = np.random.default_rng(seed).integers(2, 150, (batch, seq)).astype(np.int32)
    mask = np.ones((batch, seq), bool)
    mask[1, :2] = mask[2, :5] = False
    return np.where(mask, tokens, 0), mask


def hf_logits(hf_model, tokens, mask):
    with torch.no_grad():
        return hf_model(input_ids=torch.tensor(tokens, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long),
                        position_ids=torch.tensor(np.maximum(np.cumsum(mask, axis=-1) - 1, 0))).logits.numpy()


def assert_same(ours, reference, mask):
    """Equal to ``EXACT`` relative to each site's scale (XLA may fuse a loop body differently: a few ulps)."""
    for site in reference:
        expected = np.asarray(reference[site], np.float64)[mask]
        error = np.abs(np.asarray(ours[site], np.float64)[mask] - expected).max()
        assert error <= EXACT * max(1.0, np.abs(expected).max()), f"{site}: {error}"


def count_scans(config, params, tokens, sites) -> int:
    return str(jax.make_jaxpr(lambda p: run(config, p, tokens, sites=sites).activations)(params)).count(" scan[")


DEFAULT_FAMILIES = ("llama", "gemma2", "olmoe")  # the rest run with -m slow (about 5 s each)


@pytest.mark.parametrize("family", [f if f in DEFAULT_FAMILIES else pytest.param(f, marks=pytest.mark.slow)
                                    for f in hf_models.FAMILIES])
def test_every_site_and_the_logits_equal_unrolled_and_hf(models, family):
    hf_model, lm, scan_lm = models(family)
    tokens, mask = left_padded()
    sites = all_sites(lm.config)
    ours = lrt_jax.capture(scan_lm, tokens, sites, attention_mask=mask)
    assert_same(ours, lrt_jax.capture(lm, tokens, sites, attention_mask=mask), mask)
    error = np.abs(np.asarray(ours["logits"]) - hf_logits(hf_model, tokens, mask))[mask].max()
    assert error <= HF_TOLERANCE
    # Periodic layer types scan (one scan for all sites); qwen2's max_window_layers pattern does not repeat.
    expected_scans = 1 if layer_period(lm.config) <= LAYERS // 2 else 0
    assert count_scans(scan_lm.config, lm.params, tokens, sites) == expected_scans
    assert family == "qwen2" or expected_scans == 1


def slow_unless(default, families):
    return [f if f == default else pytest.param(f, marks=pytest.mark.slow) for f in families]


@pytest.mark.parametrize("family", slow_unless("gemma2", ["gemma2", "llama", "mixtral", "gpt_neox"]))
def test_interventions_equal_unrolled(models, family):
    _, lm, scan_lm = models(family)
    tokens, mask = left_padded()
    width, seq = lm.config.d_model, tokens.shape[1]
    rng = np.random.default_rng(0)
    vector, direction = rng.normal(size=(2, width)).astype(np.float32)
    values = rng.normal(size=(seq, width)).astype(np.float32)
    cases = {  # name: (interventions, reduce)
        "add at one layer": ([Add("layers.2.resid_post", vector, 3.0)], None),
        "at every layer, replace, ablate, mix, scale, position rules": (
            [*[Add(f"layers.{i}.resid_post", vector, 0.5 + i) for i in range(LAYERS)],
             *[Add(f"layers.{i}.resid_pre", vector, 1.0, positions="last", normalize="unit") for i in (0, 2)],
             Replace("layers.1.attn_out", values, positions="last"),
             Ablate("layers.3.resid_mid", direction),
             Mix("layers.0.mlp_out", values, 0.3, positions=np.arange(seq) >= 4),
             Scale("layers.2.mlp_out", 0.5, positions="prompt")], "last"),
        "residual-normalised add (a side effect: its layers stay unrolled)": (
            [Add("layers.1.resid_post", vector, 2.0, normalize="residual"),
             *[Add(f"layers.{i}.resid_post", vector, 1.0) for i in (2, 3)]], None),
    }
    sites = ("logits", *all_sites(lm.config, "resid_post"), "layers.1.attn_out", "layers.2.mlp_out")
    unsteered = lrt_jax.capture(lm, tokens, ["logits"], attention_mask=mask)["logits"]
    for name, (interventions, reduce) in cases.items():
        options = dict(attention_mask=mask, interventions=interventions, reduce=reduce)
        ours = lrt_jax.capture(scan_lm, tokens, sites, **options)
        reference = lrt_jax.capture(lm, tokens, sites, **options)
        assert_same(ours, reference, mask if reduce is None else np.ones(tokens.shape[0], bool))
        if reduce is None:
            assert np.abs(np.asarray(reference["logits"]) - np.asarray(unsteered))[mask].max() > 1e-3, name


@pytest.mark.parametrize("family", slow_unless("gemma2", ["gemma2", "llama", "mixtral"]))
def test_generation_equals_unrolled_and_hf(models, family):
    hf_model, lm, scan_lm = models(family)
    tokens, mask = left_padded(seq=7)
    vector = 4.0 * np.random.default_rng(2).normal(size=lm.config.d_model).astype(np.float32)
    options = dict(attention_mask=mask, max_new_tokens=8, capture_sites=("logits", "layers.1.resid_post"),
                   interventions=[Add("layers.1.resid_post", vector, 1.0, positions="generated"),
                                  Add("layers.3.resid_mid", vector, 0.5, normalize="residual")])
    for sampling in ({}, {"temperature": 1.0, "top_k": 20, "seed": 3})[: 1 if family == "gemma2" else 2]:
        ours = generate(scan_lm, tokens, **options, **sampling)
        reference = generate(lm, tokens, **options, **sampling)
        np.testing.assert_array_equal(np.asarray(ours.tokens), np.asarray(reference.tokens))
        assert_same(ours.activations, reference.activations, np.asarray(reference.generated_mask))
    with torch.no_grad():
        expected = hf_model.generate(input_ids=torch.tensor(tokens, dtype=torch.long),
                                     attention_mask=torch.tensor(mask, dtype=torch.long), max_new_tokens=8,
                                     do_sample=False, pad_token_id=0, eos_token_id=None)[:, tokens.shape[1]:]
    plain = generate(scan_lm, tokens, attention_mask=mask, max_new_tokens=8)
    np.testing.assert_array_equal(np.asarray(plain.tokens), expected.numpy())


def test_cache_is_stacked_in_scan_mode_and_either_form_is_accepted(models):
    _, lm, scan_lm = models("gemma2")
    tokens, _ = left_padded(seq=5)
    cache = empty_cache(scan_lm.config, 3, 8)
    assert isinstance(cache, ScanCache) and cache.periods[0].k.shape == (2, 3, 8, 2, 16) and cache.rest == ()
    unrolled = jax.jit(Decoder(lm.config).apply)({"params": lm.params}, tokens, cache=empty_cache(lm.config, 3, 8))
    for given in (cache, empty_cache(lm.config, 3, 8)):
        logits, new_cache = jax.jit(Decoder(scan_lm.config).apply)({"params": lm.params}, tokens, cache=given)
        assert type(new_cache) is type(given)
        layers = new_cache if not isinstance(new_cache, ScanCache) else [
            jax.tree.map(lambda s, c=c: s[c], new_cache.periods[j]) for c in range(2) for j in range(2)]
        everything = np.ones((1,), bool)
        assert_same({"logits": logits[None]}, {"logits": unrolled[0][None]}, everything)
        for ours, reference in zip(layers, unrolled[1], strict=True):
            assert_same({"k": ours.k[None], "v": ours.v[None]}, {"k": reference.k[None], "v": reference.v[None]},
                        everything)


def test_capturing_an_early_layer_computes_no_later_layer_and_all_resid_post_is_one_loop(models):
    _, lm, scan_lm = models("llama")
    tokens, mask = left_padded()

    def compiled(lm, sites):
        return _capture.lower(lm.config, lm.params, tokens, mask, (), tuple(sites), None).compile()

    def flops(compiled):
        cost = compiled.cost_analysis()
        return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]

    early = compiled(scan_lm, ["layers.1.resid_post"])
    assert " while(" not in early.as_text()
    assert flops(early) == pytest.approx(flops(compiled(lm, ["layers.1.resid_post"])), rel=0.01)
    assert flops(early) < 0.75 * flops(compiled(lm, ["layers.3.resid_post"]))
    assert compiled(scan_lm, all_sites(lm.config, "resid_post")).as_text().count(" while(") == 1


def test_stacked_parameters_round_trip_and_give_the_same_numbers(models):
    _, lm, scan_lm = models("gemma2")
    stacked = stack_layers(lm.config, lm.params)
    assert stacked["layers"]["offset_1"]["attn"]["q_proj"]["kernel"].shape == (2, 64, 64)
    assert not any(key.startswith("layers_") for key in stacked)
    jax.tree.map(np.testing.assert_array_equal, unstack_layers(lm.config, stacked), lm.params)
    tokens, mask = left_padded()
    sites = ("logits", "layers.2.resid_post")
    for interventions in ((), Add("layers.2.resid_pre", np.ones(64, np.float32), 2.0)):
        ours = lrt_jax.capture(scan_lm._replace(params=stacked), tokens, sites, attention_mask=mask,
                               interventions=interventions)
        assert_same(ours, lrt_jax.capture(lm, tokens, sites, attention_mask=mask, interventions=interventions), mask)


@pytest.mark.parametrize("remat", ["block", pytest.param("dots", marks=pytest.mark.slow)])
def test_remat_gives_the_same_gradients(remat):
    config = lrt_jax.ModelConfig("gemma2", 61, 16, 4, 4, 2, 4, 24, layer_types=("sliding", "full") * 2,
                                 sliding_window=3, post_attn_norm=True, post_mlp_norm=True)
    params = lrt_jax.init_params(config, jax.random.key(0))
    tokens, mask = left_padded()
    tokens = tokens % config.vocab_size
    vector = np.random.default_rng(5).normal(size=16).astype(np.float32)

    @functools.partial(jax.jit, static_argnums=1)
    @functools.partial(jax.grad)
    def grad(params, config):
        out = run(config, params, (tokens, mask), interventions=Add("layers.1.resid_post", vector, 1.0),
                  sites="layers.2.resid_post")
        return jnp.mean(out.logits ** 2) + jnp.mean(out.activations["layers.2.resid_post"] ** 2)

    reference = grad(params, config)
    variants = ({"scan_layers": True, "remat": remat}, {"remat": remat})  # scanned, and unrolled with remat
    for execution in variants[: 1 if remat == "block" else 2]:
        ours = grad(params, config.replace(execution=dataclasses.replace(config.execution, **execution)))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5), ours, reference)


def test_scan_is_the_default_from_eight_layers():
    small = lrt_jax.ModelConfig("llama", 61, 16, 4, 4, 2, 4, 24)
    assert scanned_by_default(small) is small
    assert scanned_by_default(small.replace(n_layers=8)).execution.scan_layers


def gemma2_like(n_layers: int, scan: bool):
    """A narrow Gemma-2 (sliding/global pairs, soft-capping, sandwich norms) of ``n_layers`` layers."""
    return lrt_jax.ModelConfig("gemma2", 256, 64, n_layers, 4, 2, 16, 128, max_position_embeddings=64,
                               layer_types=("sliding", "full") * (n_layers // 2), sliding_window=8,
                               attn_logit_softcap=50.0, final_logit_softcap=30.0, post_attn_norm=True,
                               post_mlp_norm=True, norm_offset=1.0, execution=lrt_jax.config.Execution(scan_layers=scan))


def test_the_scanned_program_does_not_grow_with_depth():
    def matmuls(n_layers, scan):
        config = gemma2_like(n_layers, scan)
        params = jax.eval_shape(lambda: lrt_jax.init_params(config, jax.random.key(0)))
        tokens, mask = jax.ShapeDtypeStruct((2, 16), jnp.int32), jax.ShapeDtypeStruct((2, 16), jnp.bool_)
        return _capture.lower(config, params, tokens, mask, (), all_sites(config, "resid_post"), None).as_text().count(
            "dot_general")

    # One sliding/global pair is compiled whatever the depth; unrolled, every layer is.
    assert matmuls(42, scan=True) == matmuls(4, scan=True) == matmuls(2, scan=False)
    assert matmuls(4, scan=False) == 2 * matmuls(2, scan=False)


@pytest.mark.slow
def test_compile_time_at_42_layers_is_within_one_and_a_half_times_that_at_4():
    from lrt_jax.parallel import plan

    def compile_s(n_layers):
        # One plan per depth: a second identical plan is served from JAX's in-process executable cache
        # (about 1 ms), so a minimum over repeats compares cache hits, not compiles.
        return plan(gemma2_like(n_layers, scan=True), topology="cpu:8", mesh="fsdp=8", batch=8, seq=64,
                    job="capture", sites="all-resid", dtype="float32").compile_s

    assert compile_s(42) <= 1.5 * compile_s(4)


def test_param_shardings_of_stacked_layers_leave_the_layer_axis_whole():
    from lrt_jax.parallel import make_mesh, param_shardings

    config = gemma2_like(4, scan=True)
    params = lrt_jax.init_params(config, jax.random.key(0))
    stacked = stack_layers(config, params)
    mesh = make_mesh({"fsdp": 8})
    per_layer, shardings = param_shardings(params, mesh), param_shardings(stacked, mesh)
    for path in (("attn", "q_proj", "kernel"), ("mlp", "down_proj", "kernel"), ("attn_norm", "scale")):
        expected, ours = per_layer["layers_1"], shardings["layers"]["offset_1"]
        for key in path:
            expected, ours = expected[key], ours[key]
        assert ours.spec == jax.sharding.PartitionSpec(None, *expected.spec)


@pytest.mark.slow
def test_sharded_stacked_layers_give_one_device_numbers():
    from lrt_jax.parallel import make_mesh, param_shardings

    config = gemma2_like(4, scan=True)
    params = lrt_jax.init_params(config, jax.random.key(0))
    stacked = stack_layers(config, params)
    placed = jax.device_put(stacked, param_shardings(stacked, make_mesh({"fsdp": 8})))
    tokens, mask = left_padded(seq=8)
    scan_lm = lrt_jax.LM(config, placed)
    reference = lrt_jax.LM(config.replace(execution=lrt_jax.config.Execution()), params)
    sites = ("logits", "layers.3.resid_post")
    assert_same(lrt_jax.capture(scan_lm, tokens % 256, sites, attention_mask=mask),
                lrt_jax.capture(reference, tokens % 256, sites, attention_mask=mask), mask)


def test_plan_lowers_scanned_layers_on_stacked_weights():
    from lrt_jax.parallel import plan

    unrolled = plan(gemma2_like(4, scan=False), topology="cpu:8", mesh="fsdp=8", batch=8, seq=16, dtype="float32")
    scanned_plan = plan(gemma2_like(4, scan=True), topology="cpu:8", mesh="fsdp=8", batch=8, seq=16, dtype="float32")
    assert (scanned_plan.params_total, scanned_plan.params_active) == (unrolled.params_total, unrolled.params_active)
    # Same weights per device (stacked, not copied); the period is compiled once, so XLA counts half the flops.
    assert scanned_plan.per_device_bytes["arguments"] == unrolled.per_device_bytes["arguments"]
    assert scanned_plan.flops == pytest.approx(unrolled.flops / 2, rel=0.1)


def test_scanned_layers_on_a_mesh_pin_activations_and_keep_the_numbers():
    from lrt_jax.parallel import make_mesh, shard_lm

    config = gemma2_like(4, scan=True)
    params = lrt_jax.init_params(config, jax.random.key(0))
    sharded = shard_lm(lrt_jax.LM(config, params), make_mesh({"fsdp": 8}))
    assert sharded.config.execution.mesh is not None and sharded.config.execution.scan_layers
    tokens = np.random.default_rng(0).integers(0, 256, (8, 6)).astype(np.int32)
    sites = ("logits", "layers.1.resid_post")
    steer = [Add(f"layers.{i}.resid_post", np.ones(64, np.float32), 1.0) for i in range(4)]
    ours = lrt_jax.capture(sharded, tokens, sites, interventions=steer)
    reference = lrt_jax.capture(lrt_jax.LM(gemma2_like(4, scan=False), params), tokens, sites, interventions=steer)
    assert_same(ours, reference, np.ones(tokens.shape, bool))
    assert ours["layers.1.resid_post"].sharding.spec[0] == "fsdp"
