"""forward / capture / sites: padding, reductions, residual identities, dtypes and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax

LLAMA = lrt_jax.ModelConfig("llama", 97, 32, 2, 4, 2, 8, 48)
NEOX = lrt_jax.ModelConfig("gpt_neox", 97, 32, 2, 4, 4, 8, 64, norm_type="layer", norm_bias=True, qkv_bias=True,
                           out_bias=True, mlp_bias=True, mlp_type="plain", activation="gelu", parallel_residual=True,
                           rope_fraction=0.5, norm_eps=1e-5)
MOE = lrt_jax.ModelConfig("mixtral", 97, 32, 2, 4, 2, 8, 48, n_experts=4, top_k=2, moe_d_ff=24)


@pytest.fixture(scope="module")
def models():
    return {c.model_type: lrt_jax.LM(c, lrt_jax.init_params(c, jax.random.key(i)))
            for i, c in enumerate((LLAMA, NEOX, MOE))}


def _tokens(batch, seq, seed=0):
    return np.random.default_rng(seed).integers(0, 97, (batch, seq))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_equal_unpadded_runs(models, side):
    lm = models["llama"]
    short, long = _tokens(1, 5, 1), _tokens(1, 8, 2)
    pad = np.zeros((1, 3), np.int64)
    padded = np.concatenate([np.concatenate([pad, short], 1) if side == "left" else np.concatenate([short, pad], 1),
                             long])
    mask = np.ones((2, 8), bool)
    mask[0, :3] = side != "left"
    mask[0, 5:] = side == "left"
    logits = np.asarray(lrt_jax.forward(lm, padded, attention_mask=mask))
    real = slice(3, 8) if side == "left" else slice(0, 5)
    np.testing.assert_allclose(logits[0, real], np.asarray(lrt_jax.forward(lm, short))[0], atol=1e-5)
    np.testing.assert_allclose(logits[1], np.asarray(lrt_jax.forward(lm, long))[0], atol=1e-5)


def test_reductions_equal_numpy_on_the_full_capture(models):
    lm = models["llama"]
    tokens = _tokens(3, 6)
    mask = np.ones((3, 6), bool)
    mask[0, :2] = False  # left padded
    mask[1, 4:] = False  # right padded
    site = "layers.1.resid_post"
    full = np.asarray(lrt_jax.capture(lm, tokens, [site], attention_mask=mask)[site])
    last = np.asarray(lrt_jax.capture(lm, tokens, [site], attention_mask=mask, reduce="last")[site])
    mean = np.asarray(lrt_jax.capture(lm, tokens, [site], attention_mask=mask, reduce="mean")[site])
    np.testing.assert_allclose(last, full[[0, 1, 2], [5, 3, 5]], atol=1e-6)
    expected_mean = np.stack([full[i][mask[i]].mean(0) for i in range(3)])
    np.testing.assert_allclose(mean, expected_mean, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "mixtral"])
def test_sequential_residual_identities(models, family):
    lm = models[family]
    sites = ["layers.1.resid_pre", "layers.1.attn_out", "layers.1.resid_mid", "layers.1.mlp_out",
             "layers.1.resid_post", "layers.0.resid_post", "final_norm", "logits", "embed", "layers.0.resid_pre"]
    acts = {k: np.asarray(v) for k, v in lrt_jax.capture(lm, _tokens(2, 5), sites).items()}
    np.testing.assert_allclose(acts["layers.1.resid_mid"], acts["layers.1.resid_pre"] + acts["layers.1.attn_out"],
                               atol=1e-6)
    np.testing.assert_allclose(acts["layers.1.resid_post"], acts["layers.1.resid_mid"] + acts["layers.1.mlp_out"],
                               atol=1e-6)
    np.testing.assert_array_equal(acts["layers.1.resid_pre"], acts["layers.0.resid_post"])
    np.testing.assert_array_equal(acts["layers.0.resid_pre"], acts["embed"])
    x = acts["layers.1.resid_post"]
    normed = x / np.sqrt((x**2).mean(-1, keepdims=True) + LLAMA.norm_eps) * np.asarray(lm.params["final_norm"]["scale"])
    np.testing.assert_allclose(acts["final_norm"], normed, atol=1e-5)
    np.testing.assert_allclose(acts["logits"], normed @ np.asarray(lm.params["lm_head"]["kernel"]), atol=1e-4)


def test_parallel_residual_reads_resid_pre_in_both_branches(models):
    lm = models["gpt_neox"]
    sites = ["layers.0.resid_pre", "layers.0.attn_out", "layers.0.resid_mid", "layers.0.mlp_out", "layers.0.resid_post"]
    acts = {k: np.asarray(v) for k, v in lrt_jax.capture(lm, _tokens(2, 5), sites).items()}
    np.testing.assert_allclose(acts["layers.0.resid_post"],
                               acts["layers.0.resid_pre"] + acts["layers.0.attn_out"] + acts["layers.0.mlp_out"],
                               atol=1e-5)
    np.testing.assert_allclose(acts["layers.0.resid_mid"], acts["layers.0.resid_pre"] + acts["layers.0.attn_out"],
                               atol=1e-6)


def test_router_logits_equal_the_router_applied_to_the_mlp_input(models):
    lm = models["mixtral"]
    acts = lrt_jax.capture(lm, _tokens(2, 4), ["layers.0.resid_mid", "layers.0.router_logits"])
    x = np.asarray(acts["layers.0.resid_mid"], np.float64)
    layer = lm.params["layers_0"]
    normed = x / np.sqrt((x**2).mean(-1, keepdims=True) + MOE.norm_eps) * np.asarray(layer["mlp_norm"]["scale"])
    expected = normed @ np.asarray(layer["moe"]["router"]["kernel"], np.float64)
    np.testing.assert_allclose(np.asarray(acts["layers.0.router_logits"]), expected, atol=1e-5)


def test_capture_keeps_requested_order_and_only_requested_sites(models):
    acts = lrt_jax.capture(models["llama"], _tokens(1, 3), ["logits", "embed", "logits"])
    assert list(acts) == ["logits", "embed"]
    assert acts["logits"].shape == (1, 3, 97) and acts["embed"].shape == (1, 3, 32)


def test_bf16_parameters_compute_norms_and_logits_in_float32(models):
    lm = models["llama"]
    bf16 = lm._replace(params=jax.tree.map(lambda p: p.astype(jnp.bfloat16), lm.params))
    tokens = _tokens(2, 6)
    logits = lrt_jax.forward(bf16, tokens)
    assert logits.dtype == jnp.float32
    assert lrt_jax.capture(bf16, tokens, ["layers.0.resid_post"])["layers.0.resid_post"].dtype == jnp.bfloat16
    reference = np.asarray(lrt_jax.forward(lm, tokens))
    assert np.abs(np.asarray(logits) - reference).max() < 0.05 * np.abs(reference).max()


def test_all_sites_and_widths(models):
    sites = lrt_jax.all_sites(MOE)
    assert sites[0] == "embed" and sites[-2:] == ("final_norm", "logits")
    assert "layers.1.router_logits" in sites and "layers.1.router_logits" not in lrt_jax.all_sites(LLAMA)
    assert lrt_jax.site_width(MOE, "layers.0.router_logits") == 4
    assert lrt_jax.site_width(MOE, "logits") == 97
    assert lrt_jax.all_sites(LLAMA, "resid_post") == ("layers.0.resid_post", "layers.1.resid_post")


@pytest.mark.parametrize("site,message", [
    ("layers.0.resid", r"Unknown site 'layers.0.resid'. Valid sites: embed, layers.\{i\}.resid_pre"),
    ("layer.0.resid_post", r"Unknown site"),
    ("layers.2.resid_post", r"names layer 2, but the model has 2 layers \(0..1\)"),
    ("layers.0.router_logits", r"only in mixture-of-experts models"),
])
def test_unknown_sites_raise_with_the_valid_patterns(models, site, message):
    with pytest.raises(lrt_jax.UnknownSiteError, match=message):
        lrt_jax.capture(models["llama"], _tokens(1, 3), [site])


def test_bad_tokens_and_masks_raise_clear_errors(models):
    lm = models["llama"]
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 97\).*got range \[0, 97\]"):
        lrt_jax.forward(lm, np.array([[0, 97]]))
    with pytest.raises(ValueError, match=r"got range \[-1, 3\]"):
        lrt_jax.forward(lm, np.array([[-1, 3]]))
    with pytest.raises(TypeError, match="tokens must be integers"):
        lrt_jax.forward(lm, np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[batch, seq\].*tokens\[None\]"):
        lrt_jax.forward(lm, np.zeros((3,), np.int32))
    with pytest.raises(ValueError, match=r"attention_mask shape \(1, 2\) does not match tokens shape \(1, 3\)"):
        lrt_jax.forward(lm, np.zeros((1, 3), np.int32), attention_mask=np.ones((1, 2)))
    with pytest.raises(ValueError, match="at least one real token"):
        lrt_jax.forward(lm, np.zeros((2, 3), np.int32), attention_mask=np.array([[1, 1, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match="reduce must be None, 'last' or 'mean'"):
        lrt_jax.capture(lm, np.zeros((1, 3), np.int32), ["embed"], reduce="first")
