"""``lrt_jax.patching``: the vmapped grid against loops of single, explicit interventions.

References: a Python loop of ``lrt_jax.forward`` calls, each with one ``Replace`` at one
site and one position (or one ``Add`` of the clean−corrupt difference on one
component), the KL computed in NumPy from their logits, and closed forms (a patch of
the last layer's last position restores the clean run exactly; a patch that copies
an equal value, or none, leaves the corrupt run).
"""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax import Add, Replace, patching
from lrt_jax.patching import _grid

CONFIG = lrt_jax.ModelConfig("llama", 61, 16, 3, 4, 2, 4, 24)
BATCH, SEQ, CORRECT, WRONG = 2, 5, 3, 7
CHANGED = 2  # the column where corrupt tokens differ from clean ones


@pytest.fixture(scope="module")
def lm():
    # Weights well above the 0.02 init, so that patches move the logits by far more than the tolerance.
    params = jax.tree.map(lambda p: 6.0 * p, lrt_jax.init_params(CONFIG, jax.random.key(0)))
    return lrt_jax.LM(CONFIG, params)


@pytest.fixture(scope="module")
def pair():
    """Clean and corrupt batches that differ in one column, both left-padded by one token in row 1."""
    tokens = np.random.default_rng(0).integers(0, 61, (BATCH, SEQ)).astype(np.int32)
    corrupt = tokens.copy()
    corrupt[:, CHANGED] = (corrupt[:, CHANGED] + 11) % 61
    mask = np.ones((BATCH, SEQ), bool)
    mask[1, 0] = False
    return lrt_jax.Batch(tokens, mask), lrt_jax.Batch(corrupt, mask)


def numpy_kl(reference_logits, logits):
    def log_softmax(x):
        x = np.asarray(x, np.float64)
        shifted = x - x.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

    p = log_softmax(reference_logits)
    return np.sum(np.exp(p) * (p - log_softmax(logits)), axis=-1)


def last_logits(lm, batch, interventions=()):
    logits = np.asarray(lrt_jax.forward(lm, batch, interventions=interventions))
    return logits[np.arange(BATCH), SEQ - 1]  # both rows end in the last column


@pytest.mark.parametrize("site", ["resid_pre", "resid_post"])
def test_position_grid_equals_a_loop_of_single_replace_patches(lm, pair, site):
    clean, corrupt = pair
    result = patching.activation_patching(lm, clean, corrupt, site, answers=(CORRECT, WRONG))
    clean_logits = last_logits(lm, clean)
    assert result.values["logit_diff"].shape == result.values["kl"].shape == (3, SEQ, BATCH)
    for layer in range(CONFIG.n_layers):
        name = f"layers.{layer}.{site}"
        clean_value = lrt_jax.capture(lm, clean, name)[name]
        for position in range(SEQ):
            logits = last_logits(lm, corrupt, Replace(name, clean_value, positions=np.arange(SEQ) == position))
            np.testing.assert_allclose(result.values["logit_diff"][layer, position],
                                       logits[:, CORRECT] - logits[:, WRONG], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(result.values["kl"][layer, position], numpy_kl(clean_logits, logits),
                                       rtol=1e-3, atol=1e-5)
    corrupt_logits = last_logits(lm, corrupt)
    np.testing.assert_allclose(result.corrupt["kl"], numpy_kl(clean_logits, corrupt_logits), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(result.clean["logit_diff"], clean_logits[:, CORRECT] - clean_logits[:, WRONG],
                               rtol=1e-5, atol=1e-5)


def test_neuron_grid_equals_a_loop_of_adds_of_one_component(lm, pair):
    """The axis-2 path (heads of attn.z, neurons): here the components of resid_mid, at all positions."""
    clean, corrupt = pair
    result = patching.activation_patching(lm, clean, corrupt, "resid_mid", over="neuron", answers=(CORRECT, WRONG),
                                          layers=[0, 2])
    assert result.layers == (0, 2) and result.values["kl"].shape == (2, CONFIG.d_model, BATCH)
    for row, layer in enumerate((0, 2)):
        name = f"layers.{layer}.resid_mid"
        difference = lrt_jax.capture(lm, clean, name)[name] - lrt_jax.capture(lm, corrupt, name)[name]
        for component in range(CONFIG.d_model):
            only = jnp.where(jnp.arange(CONFIG.d_model) == component, difference, 0.0)
            logits = last_logits(lm, corrupt, Add(name, only, 1.0))
            np.testing.assert_allclose(result.values["logit_diff"][row, component],
                                       logits[:, CORRECT] - logits[:, WRONG], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["attn.z", "attn.k"])
def test_head_grid_equals_a_loop_of_replaces_of_one_head(lm, pair, kind):
    """``over="head"`` on ``[batch, seq, heads, head_dim]`` sites (``attn.k``: the 2 KV heads of GQA)."""
    clean, corrupt = pair
    result = patching.activation_patching(lm, clean, corrupt, kind, over="head", answers=(CORRECT, WRONG))
    for layer in range(CONFIG.n_layers):
        name = f"layers.{layer}.{kind}"
        clean_value, values = (np.asarray(lrt_jax.capture(lm, b, name)[name]) for b in pair)
        assert result.values["kl"].shape == (CONFIG.n_layers, clean_value.shape[2], BATCH)
        for head in range(clean_value.shape[2]):
            one_head = values.copy()
            one_head[:, :, head] = clean_value[:, :, head]
            logits = last_logits(lm, corrupt, Replace(name, one_head.reshape(BATCH, SEQ, -1)))
            np.testing.assert_allclose(result.values["logit_diff"][layer, head],
                                       logits[:, CORRECT] - logits[:, WRONG], rtol=1e-4, atol=1e-4)


def test_a_head_patch_copies_the_chosen_heads_of_a_heads_site(lm):
    """``over="head"``: the edit on a ``[batch, seq, heads, head_dim]`` value (or its flattened
    ``[batch, seq, heads · head_dim]`` view), against NumPy indexing."""
    rng = np.random.default_rng(1)
    h, clean = (rng.normal(size=(2, 3, 4, 5)).astype(np.float32) for _ in range(2))
    heads = np.array([False, True, False, True])
    patch = patching.PatchFromClean("layers.0.attn.z", jnp.asarray(clean), jnp.asarray(True), jnp.asarray(heads),
                                    _grid.UNIT_AXIS["head"])
    expected = h.copy()
    expected[:, :, heads] = clean[:, :, heads]
    np.testing.assert_array_equal(patch.edit(jnp.asarray(h), None, None), expected)
    flat = patch.edit(jnp.asarray(h.reshape(2, 3, 20)), None, None)  # as the hook hands per-head sites
    np.testing.assert_array_equal(flat, expected.reshape(2, 3, 20))
    off = patching.PatchFromClean("layers.0.attn.z", jnp.asarray(clean), jnp.asarray(False), jnp.asarray(heads), 2)
    np.testing.assert_array_equal(off.edit(jnp.asarray(h), None, None), h)


def test_patching_the_last_layers_last_position_gives_the_clean_metric_and_nothing_the_corrupt_one(lm, pair):
    clean, corrupt = pair
    result = patching.activation_patching(lm, clean, corrupt, "resid_post", answers=(CORRECT, WRONG))
    last = CONFIG.n_layers - 1
    # The last layer's resid_post feeds only the head at its own position: the last column restores the clean
    # run, every other column changes nothing at the last token.
    np.testing.assert_allclose(result.values["logit_diff"][last, SEQ - 1], result.clean["logit_diff"], rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(result.values["kl"][last, SEQ - 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(result.values["logit_diff"][last, :SEQ - 1],
                               np.broadcast_to(result.corrupt["logit_diff"], (SEQ - 1, BATCH)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.normalized("logit_diff")[last], [0, 0, 0, 0, 1], atol=1e-5)
    # Columns where clean and corrupt tokens agree have equal embeddings: layer 0's resid_pre patch is a no-op.
    first = patching.activation_patching(lm, clean, corrupt, "resid_pre", answers=(CORRECT, WRONG), layers=[0])
    unchanged = [j for j in range(SEQ) if j != CHANGED]
    np.testing.assert_allclose(first.values["logit_diff"][0, unchanged],
                               np.broadcast_to(first.corrupt["logit_diff"], (SEQ - 1, BATCH)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(first.values["logit_diff"][0, CHANGED], first.clean["logit_diff"], rtol=1e-5,
                               atol=1e-5)


def test_a_patch_of_every_position_restores_the_clean_logits_and_a_patch_switched_off_keeps_the_corrupt_ones(lm, pair):
    clean, corrupt = pair
    site = f"layers.{CONFIG.n_layers - 1}.resid_post"
    clean_value = lrt_jax.capture(lm, clean, site)[site]
    every = np.ones(SEQ, bool)
    for layer_on, expected in ((True, clean), (False, corrupt)):
        patch = patching.PatchFromClean(site, clean_value, jnp.asarray(layer_on), jnp.asarray(every))
        logits = lrt_jax.run(lm.config, lm.params, corrupt, interventions=patch).logits
        real = clean.attention_mask[..., None]
        np.testing.assert_allclose(np.where(real, logits, 0), np.where(real, lrt_jax.forward(lm, expected), 0),
                                   rtol=1e-5, atol=1e-5)


def test_the_whole_grid_is_one_traced_program_and_chunked_cells_agree(lm, pair, monkeypatch):
    clean, corrupt = pair
    calls = []
    real_run = _grid.run
    monkeypatch.setattr(_grid, "run", lambda *args, **kwargs: calls.append(1) or real_run(*args, **kwargs))
    grid = jax.jit(patching.patching_grid, static_argnames=("config", "sites", "over", "cells_per_step"))
    batches = tuple((b.tokens, b.attention_mask) for b in pair)
    for n_layers in (2, 3):
        calls.clear()
        sites = tuple(f"layers.{i}.resid_pre" for i in range(n_layers))
        whole = grid(lm.config, lm.params, *batches, sites, answers=(CORRECT, WRONG))
        assert len(calls) == 3  # clean, the vmapped patched cells, corrupt: independent of the grid size
        assert whole.logit_diff.shape == (n_layers, SEQ, BATCH)
    calls.clear()  # new token values of the same shapes: the compiled grid is reused, nothing is traced again
    grid(lm.config, lm.params, (clean.tokens[::-1], clean.attention_mask), batches[1], sites, answers=(CORRECT, WRONG))
    assert not calls
    chunked = grid(lm.config, lm.params, *batches, sites, answers=(CORRECT, WRONG), cells_per_step=4)
    np.testing.assert_allclose(chunked.logit_diff, whole.logit_diff, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked.kl, whole.kl, rtol=1e-5, atol=1e-6)


def test_answers_per_row_equal_scalar_answers_row_by_row(lm, pair):
    correct, wrong = np.array([CORRECT, 11], np.int32), np.array([WRONG, 4], np.int32)
    per_row = patching.activation_patching(lm, *pair, "resid_pre", answers=(correct, wrong), layers=[1])
    for row in range(BATCH):
        scalar = patching.activation_patching(lm, *pair, "resid_pre", answers=(int(correct[row]), int(wrong[row])),
                                              layers=[1])
        np.testing.assert_allclose(per_row.values["logit_diff"][..., row], scalar.values["logit_diff"][..., row],
                                   rtol=1e-6, atol=1e-6)
        assert per_row.clean["logit_diff"][row] == pytest.approx(float(scalar.clean["logit_diff"][row]), abs=1e-6)


def test_next_token_kl_equals_numpy():
    rng = np.random.default_rng(2)
    reference, logits = (rng.normal(scale=3.0, size=(4, 61)).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(patching.next_token_kl(reference, logits), numpy_kl(reference, logits), rtol=1e-5)
    np.testing.assert_allclose(patching.next_token_kl(reference, reference), 0.0, atol=1e-6)


def test_normalized_effect_records_csv_and_heatmap(lm, pair, tmp_path):
    clean, corrupt = pair
    result = patching.activation_patching(lm, clean, corrupt, "resid_pre", answers=(CORRECT, WRONG))
    ld, clean_ld, corrupt_ld = (np.mean(v[k], axis=-1) for v, k in ((result.values, "logit_diff"),
                                                                   (result.clean, "logit_diff"),
                                                                   (result.corrupt, "logit_diff")))
    np.testing.assert_allclose(result.normalized("logit_diff"), (ld - corrupt_ld) / (clean_ld - corrupt_ld),
                               rtol=1e-6)
    records = result.records()
    assert len(records) == 2 * CONFIG.n_layers * SEQ
    kl_cell = [r for r in records if r.metric == "kl" and r.layer == 1 and r.unit == CHANGED][0]
    assert kl_cell.value == pytest.approx(float(np.mean(result.values["kl"][1, CHANGED])))
    assert kl_cell.normalized == pytest.approx(1 - kl_cell.value / float(np.mean(result.corrupt["kl"])), rel=1e-5)
    assert kl_cell.label == f"{CHANGED} {clean.tokens[0, CHANGED]}/{corrupt.tokens[0, CHANGED]}"
    result.to_csv(tmp_path / "patching.csv")
    with (tmp_path / "patching.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(records) and float(rows[0]["value"]) == pytest.approx(records[0].value)
    patching.plot_patching_heatmap(result, tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    without_answers = patching.activation_patching(lm, clean, corrupt, "resid_pre", layers=[1])
    assert without_answers.metrics == ("kl",)
    with pytest.raises(ValueError, match="answers="):
        without_answers.normalized("logit_diff")


@pytest.mark.parametrize("change, error, message", [
    (dict(corrupt=lrt_jax.Batch(np.zeros((BATCH, SEQ + 1), np.int32), np.ones((BATCH, SEQ + 1), bool))),
     ValueError, "same token length"),
    (dict(corrupt=lrt_jax.Batch(np.zeros((BATCH, SEQ), np.int32), np.ones((BATCH, SEQ), bool))),
     ValueError, "different attention masks"),
    (dict(site="resid_sideways"), lrt_jax.UnknownSiteError, "Unknown site"),
    (dict(site="layers.1.resid_pre"), ValueError, "per-layer site kind"),
    (dict(site="attn.pattern"), ValueError, "over='head'"),
    (dict(layers=[0, 3]), lrt_jax.UnknownSiteError, "3 layers"),
    (dict(answers=(CORRECT, 61)), ValueError, r"in \[0, 61\)"),
    (dict(answers=(CORRECT, np.array([1, 2, 3]))), ValueError, "shape"),
    (dict(over="head"), ValueError, r"\[batch, seq, heads, head_dim\]"),
    (dict(over="token"), ValueError, "over must be one of"),
    (dict(cells_per_step=0), ValueError, "cells_per_step"),
])
def test_bad_input_gets_a_clear_error(lm, pair, change, error, message):
    arguments = dict(clean=pair[0], corrupt=pair[1], site="resid_pre", answers=(CORRECT, WRONG))
    arguments.update(change)
    with pytest.raises(error, match=message):
        patching.activation_patching(lm, arguments.pop("clean"), arguments.pop("corrupt"), arguments.pop("site"),
                                     **arguments)
