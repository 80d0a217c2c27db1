"""The per-head attention sites (``attn.q/k/v/z/pattern``) against HF PyTorch, and head-level edits.

References, on HF's eager attention for every family of ``tests/hf_models.py``:

* ``attn.q/k/v``: the query, key and value tensors HF hands to its attention function
  (after RoPE and QK-norm, keys and values with ``n_kv_heads`` heads, before any
  ``repeat_kv``), read by wrapping the modeling module's ``eager_attention_forward``;
* ``attn.z``: the input of the output projection (``o_proj`` / ``c_proj`` / ``dense``),
  read by a forward pre-hook, as ``[batch, seq, heads, head_dim]``;
* ``attn.pattern``: ``output_attentions=True``.

Head ablation is checked against the same hooks rewriting HF's tensors: zeroing
query heads' columns of the ``o_proj`` input, and zeroing one KV head's values in a
grouped-query model (which silences every query head of its group).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys

import hf_models
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax.interventions import Ablate

import torch
import transformers

TOLERANCE = 1e-5
SEQ = 10


@functools.cache
def eager_hf_model(directory: str):
    return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32,
                                                             attn_implementation="eager").eval()


@pytest.fixture
def models(tiny_hf_checkpoint, hf_and_lrt_models):
    """``models(family) -> (eager hf_model, lm)``."""
    return lambda family: (eager_hf_model(str(tiny_hf_checkpoint(family))), hf_and_lrt_models(family)[1])


def left_padded_batch() -> tuple[np.ndarray, np.ndarray]:
    tokens = np.random.default_rng(0).integers(2, hf_models.VOCAB_SIZE, (2, SEQ))
    mask = np.ones((2, SEQ), np.int64)
    mask[0, :3] = mask[1, :1] = 0
    return np.where(mask == 1, tokens, 0), mask


def attention_modules(hf_model) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """``(attention module, its output projection)`` per layer."""
    layers = getattr(hf_model.base_model, "layers", None) or hf_model.base_model.h
    pairs = []
    for layer in layers:
        attn = next(getattr(layer, name) for name in ("self_attn", "attn", "attention") if hasattr(layer, name))
        pairs.append((attn, next(getattr(attn, name) for name in ("o_proj", "c_proj", "dense") if hasattr(attn, name))))
    return pairs


def run_hf(hf_model, monkeypatch, tokens, mask, *, edit_qkv=None, edit_z=None):
    """HF logits plus ``{site: value}`` for q/k/v/z/pattern of every layer; optional edits of HF's tensors.

    ``edit_qkv(layer, q, k, v) -> (q, k, v)`` on ``[b, heads, t, d]`` tensors; ``edit_z(layer, z)`` on
    ``[b, t, heads · d]``.
    """
    pairs = attention_modules(hf_model)
    layer_of = {id(attn): i for i, (attn, _) in enumerate(pairs)}
    values: dict[str, np.ndarray] = {}
    modeling = sys.modules[type(pairs[0][0]).__module__]
    eager = modeling.eager_attention_forward

    def recording_eager(module, query, key, value, *args, **kwargs):
        i = layer_of[id(module)]
        if edit_qkv is not None:
            query, key, value = edit_qkv(i, query, key, value)
        for name, tensor in (("q", query), ("k", key), ("v", value)):
            values[f"layers.{i}.attn.{name}"] = tensor.transpose(1, 2).numpy()
        return eager(module, query, key, value, *args, **kwargs)

    n_heads = hf_model.config.num_attention_heads

    def pre_hook(i):
        def hook(module, args):
            z = args[0] if edit_z is None else edit_z(i, args[0])
            values[f"layers.{i}.attn.z"] = z.reshape(*z.shape[:2], n_heads, -1).numpy()
            return (z, *args[1:])
        return hook

    monkeypatch.setattr(modeling, "eager_attention_forward", recording_eager)
    handles = [proj.register_forward_pre_hook(pre_hook(i)) for i, (_, proj) in enumerate(pairs)]
    positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)
    try:
        with torch.no_grad():
            out = hf_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                           position_ids=torch.tensor(positions), output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
        monkeypatch.undo()
    for i, weights in enumerate(out.attentions):
        values[f"layers.{i}.attn.pattern"] = weights.numpy()
    return out.logits.numpy(), values


def real_rows(site: str, value: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The entries at real query tokens (axis 1, or axis 2 of a ``[b, heads, q, k]`` pattern)."""
    real = mask.astype(bool)
    return np.moveaxis(value, 2, 1)[real] if site.endswith("pattern") else value[real]


@pytest.mark.parametrize("path", ["materialized", pytest.param("blockwise", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", hf_models.FAMILIES)
def test_head_sites_match_transformers(models, monkeypatch, family, path):
    hf_model, lm = models(family)
    lm = lm._replace(config=lm.config.replace(
        execution=dataclasses.replace(lm.config.execution, attention=path, attention_block=4)))
    tokens, mask = left_padded_batch()
    _, expected = run_hf(hf_model, monkeypatch, tokens, mask)
    sites = [f"layers.{i}.attn.{kind}" for i in range(lm.config.n_layers) for kind in ("q", "k", "v", "z", "pattern")]
    ours = lrt_jax.capture(lm, jnp.asarray(tokens), sites, attention_mask=jnp.asarray(mask))
    c = lm.config
    assert ours["layers.0.attn.q"].shape == (2, SEQ, c.n_heads, c.head_dim)
    assert ours["layers.0.attn.k"].shape == ours["layers.0.attn.v"].shape == (2, SEQ, c.n_kv_heads, c.head_dim)
    assert ours["layers.0.attn.z"].shape == (2, SEQ, c.n_heads, c.head_dim)
    assert ours["layers.0.attn.pattern"].shape == (2, c.n_heads, SEQ, SEQ)
    errors = {site: float(np.abs(real_rows(site, np.asarray(ours[site]), mask)
                                 - real_rows(site, expected[site], mask)).max()) for site in sites}
    assert max(errors.values()) <= TOLERANCE, f"{family}: max abs error per site {errors}"


def zeroing(site: str, heads: tuple[int, ...], n_heads: int, head_dim: int) -> list[Ablate]:
    """``Ablate`` of every unit column of ``heads`` at a per-head site: the heads' values become 0."""
    eye = np.eye(n_heads * head_dim, dtype=np.float32)
    return [Ablate(site, eye[h * head_dim + d]) for h in heads for d in range(head_dim)]


@pytest.mark.parametrize("family", ["llama", "olmoe", pytest.param("gemma2", marks=pytest.mark.slow)])
def test_ablating_heads_of_z_equals_zeroing_o_proj_input_columns(models, monkeypatch, family):
    hf_model, lm = models(family)
    c = lm.config
    tokens, mask = left_padded_batch()
    heads, layer = (1, 2), 1  # under GQA heads 1 and 2 read different KV heads

    def zero_columns(i, z):
        if i != layer:
            return z
        z = z.clone()
        for h in heads:
            z[..., h * c.head_dim:(h + 1) * c.head_dim] = 0
        return z

    expected, hf_values = run_hf(hf_model, monkeypatch, tokens, mask, edit_z=zero_columns)
    site = f"layers.{layer}.attn.z"
    interventions = zeroing(site, heads, c.n_heads, c.head_dim)
    ours = lrt_jax.forward(lm, jnp.asarray(tokens), attention_mask=jnp.asarray(mask), interventions=interventions)
    real = mask.astype(bool)
    assert np.abs(np.asarray(ours) - expected)[real].max() <= TOLERANCE
    edited = lrt_jax.capture(lm, jnp.asarray(tokens), [site], attention_mask=jnp.asarray(mask),
                             interventions=interventions)[site]
    assert np.all(np.asarray(edited)[real][:, list(heads)] == 0)  # interventions touch real tokens only
    np.testing.assert_allclose(np.asarray(edited)[real], hf_values[site][real], atol=TOLERANCE)


def test_ablating_a_kv_head_silences_its_query_group(models, monkeypatch):
    """Zeroing KV head 1's values (GQA: 4 query heads on 2 KV heads) equals HF with that head's values zeroed."""
    hf_model, lm = models("llama")
    c = lm.config
    tokens, mask = left_padded_batch()

    def zero_values(i, q, k, v):
        if i == 0:
            v = v.clone()
            v[:, 1] = 0
        return q, k, v

    expected, hf_values = run_hf(hf_model, monkeypatch, tokens, mask, edit_qkv=zero_values)
    ours = lrt_jax.capture(lm, jnp.asarray(tokens), ["layers.0.attn.z", "logits"], attention_mask=jnp.asarray(mask),
                           interventions=zeroing("layers.0.attn.v", (1,), c.n_kv_heads, c.head_dim))
    real = mask.astype(bool)
    assert np.abs(np.asarray(ours["logits"]) - expected)[real].max() <= TOLERANCE
    z = np.asarray(ours["layers.0.attn.z"])[real]
    groups = c.n_heads // c.n_kv_heads
    assert np.all(z[:, groups:] == 0) and np.abs(z[:, :groups]).max() > 0.1


def lowered(config, params, tokens, mask, sites) -> str:
    run = jax.jit(lambda p, t, m: lrt_jax.run(config, p, (t, m), sites=sites).activations)
    return run.lower(params, tokens, mask).as_text()


def test_only_a_requested_pattern_materialises_the_scores():
    """On the blockwise path no ``[q, slots]`` tensor exists unless ``attn.pattern`` is asked for, then for that layer."""
    seq = 64
    config = lrt_jax.ModelConfig("llama", 64, 32, 2, 4, 2, 8, 48)
    config = config.replace(execution=dataclasses.replace(config.execution, attention="blockwise", attention_block=16))
    params = lrt_jax.init_params(config, jax.random.key(0))
    tokens, mask = jnp.zeros((1, seq), jnp.int32), jnp.ones((1, seq), bool)
    scores = re.compile(rf"tensor<1x2x2x{seq}x{seq}xf32>")
    assert not scores.search(lowered(config, params, tokens, mask, ("layers.1.resid_post", "layers.0.attn.z")))
    with_pattern = lowered(config, params, tokens, mask, ("layers.1.resid_post", "layers.0.attn.pattern"))
    assert scores.search(with_pattern)
    pattern = lrt_jax.run(config, params, (tokens, mask), sites="layers.0.attn.pattern").activations
    materialized = config.replace(execution=dataclasses.replace(config.execution, attention="materialized"))
    reference = lrt_jax.run(materialized, params, (tokens, mask), sites="layers.0.attn.pattern").activations
    np.testing.assert_array_equal(np.asarray(pattern["layers.0.attn.pattern"]),
                                  np.asarray(reference["layers.0.attn.pattern"]))
