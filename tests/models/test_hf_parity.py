"""Numerical parity with transformers (PyTorch, fp32) for every supported family.

For each family a tiny random HF model is saved with ``save_pretrained`` and loaded
with :func:`lrt_jax.loading.load`; then ``forward`` logits and ``capture`` of every
``layers.{i}.resid_post`` must match HF within 1e-4, on an unpadded and a left-padded
batch.

What HF's ``hidden_states`` hold (checked for all 11 families, transformers 5.23):
``hidden_states[0]`` is the (scaled, position-added) embedding, ``hidden_states[i+1]``
the output of layer ``i`` for ``i < n_layers - 1``, and the *last* entry is the output
of the final norm rather than the raw residual of the last layer (gpt2 and gpt_neox
included). So layers ``0..n-2`` are compared with ``hidden_states[i+1]``, the last
layer's ``resid_post`` with the output of HF's last decoder layer (read by a forward
hook), and ``hidden_states[-1]`` with the ``final_norm`` site.

Left padding: HF does not derive positions from the mask in a plain forward, so the
test passes ``position_ids`` counted over real tokens, and compares real tokens only.
"""

from __future__ import annotations

import functools

import hf_models
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax.loading import load

import torch
import transformers

TOLERANCE = 1e-4
SEQ = 10  # longer than the sliding windows (4) of the tiny configs.


@functools.cache
def hf_and_lrt_models(family: str, directory: str):
    hf_models.save_tiny_hf_model(family, directory)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return hf_model, load(directory)


def batch(padded: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, mask)`` ``[2, SEQ]``; the padded batch left-pads row 0 by 3 and row 1 by 1."""
    tokens = np.random.default_rng(0).integers(2, hf_models.VOCAB_SIZE, (2, SEQ))
    mask = np.ones((2, SEQ), dtype=np.int64)
    if padded:
        mask[0, :3] = 0
        mask[1, :1] = 0
        tokens = np.where(mask == 1, tokens, 0)
    return tokens, mask


def hf_activations(hf_model, tokens: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """HF's values for our sites ``logits``, ``layers.{i}.resid_post`` and ``final_norm``."""
    layers = getattr(hf_model.base_model, "layers", None) or hf_model.base_model.h  # gpt2 calls them h
    last_layer_output = []
    hook = layers[-1].register_forward_hook(lambda module, args, output: last_layer_output.append(output))
    positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)
    try:
        with torch.no_grad():
            out = hf_model(
                input_ids=torch.tensor(tokens),
                attention_mask=torch.tensor(mask),
                position_ids=torch.tensor(positions),
                output_hidden_states=True,
            )
    finally:
        hook.remove()
    n_layers = len(layers)
    values = {f"layers.{i}.resid_post": out.hidden_states[i + 1] for i in range(n_layers - 1)}
    values[f"layers.{n_layers - 1}.resid_post"] = last_layer_output[0]
    values["final_norm"] = out.hidden_states[-1]
    values["logits"] = out.logits
    return {site: value.numpy() for site, value in values.items()}


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_logits_and_residual_stream_match_transformers(family, padded, tmp_path_factory):
    directory = str(tmp_path_factory.getbasetemp() / f"parity_{family}")
    hf_model, lm = hf_and_lrt_models(family, directory)
    tokens, mask = batch(padded)
    expected = hf_activations(hf_model, tokens, mask)
    real = mask.astype(bool)

    sites = [f"layers.{i}.resid_post" for i in range(lm.config.n_layers)] + ["final_norm"]
    ours = dict(lrt_jax.capture(lm, jnp.asarray(tokens), sites, attention_mask=jnp.asarray(mask)))
    ours["logits"] = lrt_jax.forward(lm, jnp.asarray(tokens), attention_mask=jnp.asarray(mask))

    errors = {site: float(np.abs(np.asarray(ours[site]) - expected[site])[real].max()) for site in expected}
    assert max(errors.values()) <= TOLERANCE, f"{family}: max abs error per site {errors}"
