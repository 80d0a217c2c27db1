"""``lrt_jax.lens``: the logit lens against HF PyTorch and the model's own logits.

References: ``lm_head(norm(hidden_states[l]))`` of tiny HF models (soft-capped for
Gemma-2), fed the same hidden states (≤ 1e-5) and end to end from the tokens
(within the forward parity of ``tests/models``, 1e-4); the closed form
``lens(layers.{L-1}.resid_post) = logits``; NumPy's top-k of those logits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import lrt_jax
from lrt_jax import lens

SEQ = 6


def hf_lens(hf_model, hidden: torch.Tensor) -> np.ndarray:
    """HF's final norm and output head on ``hidden [..., d_model]``, soft-capped as HF's forward does."""
    norm = getattr(hf_model.base_model, "norm", None) or hf_model.base_model.ln_f  # gpt2 calls it ln_f
    with torch.no_grad():
        logits = hf_model.get_output_embeddings()(norm(hidden))
    cap = getattr(hf_model.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits.numpy()


def numpy_log_softmax(x):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(2, 160, (2, SEQ)).astype(np.int32)


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_lens_equals_hf_head_of_norm_of_hidden_states(hf_and_lrt_models, tokens, family):
    hf_model, lm = hf_and_lrt_models(family)
    with torch.no_grad():
        hidden = hf_model(torch.tensor(tokens, dtype=torch.long), output_hidden_states=True).hidden_states
    # hidden_states[l] is the residual entering layer l for l < n_layers (the last entry is already normed).
    for layer in range(lm.config.n_layers):
        expected = hf_lens(hf_model, hidden[layer])
        ours = lens.lens_logits(lm.config, lm.params, jnp.asarray(hidden[layer].numpy()))
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    sites = ("embed", *(f"layers.{i}.resid_post" for i in range(lm.config.n_layers - 1)))
    result = lens.logit_lens(lm, tokens, sites, top_k=4)
    for index in range(len(sites)):
        reference = numpy_log_softmax(hf_lens(hf_model, hidden[index]))
        top = np.take_along_axis(reference, result.token_ids[index], axis=-1)
        np.testing.assert_allclose(result.logprobs[index], top, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(result.logprobs[index], -np.sort(-reference, axis=-1)[..., :4], rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("config", [
    lrt_jax.ModelConfig("llama", 61, 16, 3, 4, 2, 4, 24),
    lrt_jax.ModelConfig("gemma2", 61, 16, 2, 4, 2, 4, 24, tie_embeddings=True, norm_offset=1.0,
                        final_logit_softcap=3.0, embedding_scale=4.0),
], ids=["llama", "gemma2-like"])
def test_lens_of_the_last_resid_post_is_the_models_logits(config):
    lm = lrt_jax.LM(config, jax.tree.map(lambda p: 4.0 * p, lrt_jax.init_params(config, jax.random.key(1))))
    tokens = np.random.default_rng(1).integers(0, 61, (2, SEQ)).astype(np.int32)
    mask = np.ones((2, SEQ), bool)
    mask[0, :2] = False  # left padding
    last = f"layers.{config.n_layers - 1}.resid_post"
    logits = np.asarray(lrt_jax.forward(lm, tokens, attention_mask=mask))
    resid = lrt_jax.capture(lm, tokens, last, attention_mask=mask)[last]
    np.testing.assert_allclose(lens.lens_logits(config, lm.params, resid), logits, rtol=1e-5, atol=1e-5)
    result = lens.logit_lens(lm, tokens, attention_mask=mask, top_k=3)
    assert result.sites == ("embed", *lrt_jax.all_sites(config, "resid_post"))
    reference = numpy_log_softmax(logits)
    real = mask.astype(bool)
    np.testing.assert_array_equal(result.token_ids[-1][real], np.argsort(-reference, axis=-1)[..., :3][real])
    np.testing.assert_allclose(result.logprobs[-1][real], -np.sort(-reference, axis=-1)[..., :3][real], atol=1e-5)
    assert (result.positions == np.where(real, np.arange(SEQ), -1)).all()
    at_last = lens.logit_lens(lm, tokens, attention_mask=mask, top_k=3, reduce="last")
    assert at_last.token_ids.shape == (len(result.sites), 2, 1, 3)
    np.testing.assert_array_equal(at_last.token_ids[:, :, 0], result.token_ids[:, :, -1])
    np.testing.assert_allclose(at_last.logprobs[:, :, 0], result.logprobs[:, :, -1], rtol=1e-5, atol=1e-6)


def test_records_csv_plot_and_decoded_tokens(tiny_hf_checkpoint, tmp_path):
    lm = lrt_jax.load(tiny_hf_checkpoint("llama", with_tokenizer=True))
    batch = lrt_jax.encode(lm, ["a b c", "a b"])
    result = lens.logit_lens(lm, batch, top_k=2)
    real = int(np.sum(batch.attention_mask))
    records = result.records()
    assert len(records) == len(result.sites) * real * 2
    first = records[0]
    assert first.token == lm.tokenizer.convert_ids_to_tokens([first.token_id])[0]
    assert first.logprob == pytest.approx(float(result.logprobs[0, first.row, np.argmax(
        result.positions[first.row] == first.position), first.rank]))
    result.to_csv(tmp_path / "lens.csv")
    assert (tmp_path / "lens.csv").read_text().splitlines()[0] == "site,row,position,rank,token_id,token,logprob"
    lens.plot_logit_lens(result, tmp_path / "lens.png", row=1)
    assert (tmp_path / "lens.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("change, error, message", [
    (dict(sites=["final_norm"]), lrt_jax.UnknownSiteError, "already normed"),
    (dict(sites=["layers.0.router_logits"]), lrt_jax.UnknownSiteError, "mixture-of-experts"),
    (dict(sites=["layers.9.resid_post"]), lrt_jax.UnknownSiteError, "layers"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(reduce="mean"), ValueError, "reduce"),
])
def test_bad_input_gets_a_clear_error(change, error, message):
    config = lrt_jax.ModelConfig("llama", 61, 16, 2, 4, 2, 4, 24)
    lm = lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(0)))
    with pytest.raises(error, match=message):
        lens.logit_lens(lm, np.zeros((1, 3), np.int32), **change)
