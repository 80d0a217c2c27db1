"""repeng and steering-vectors interop: ours -> theirs -> ours is exact, and their steering equals our Add.

The index convention (layers.{i}.resid_post <-> their block index i, no shift) is
checked end to end: a converted vector applied with steering-vectors' ``apply`` or
repeng's ``ControlModel.set_control`` on the HF torch model gives the logits of
``forward(lm, tokens, interventions=Add("layers.{i}.resid_post", v, alpha))``.
"""

import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import lrt_jax
from lrt_jax import steering
from lrt_jax.interventions import Add

# Both oracles are required, never skipped; the README's test command installs them with
# --no-deps from tests/interop-requirements.txt.
for _module in ("repeng", "steering_vectors"):
    if importlib.util.find_spec(_module) is None:
        raise ImportError(f"{_module} is missing: pip install --no-deps -r tests/interop-requirements.txt")

D = 64
LOGIT_TOLERANCE = 1e-4
PROMPTS = ["w1 w5 w9 w2 w7", "w3 w3 w8 w11 w4"]


@pytest.fixture(scope="module")
def repeng():
    # repeng 0.4 annotates with np.float_, removed in NumPy 2; give it back only while importing.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np, "float_", np.float64, raising=False)
        import repeng as module
    return module


@pytest.fixture(scope="module")
def checkpoint(tiny_hf_checkpoint):
    return tiny_hf_checkpoint("llama", with_tokenizer=True)


@pytest.fixture(scope="module")
def models(hf_and_lrt_models):
    return hf_and_lrt_models("llama", with_tokenizer=True)


@pytest.fixture(scope="module")
def tokens(checkpoint):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
    return np.asarray(tokenizer(PROMPTS, return_tensors="np")["input_ids"], dtype=np.int32)


def vector_at(layer, seed=0, model="tiny-llama", d=D, scale=1.0):
    values = (scale * np.random.default_rng(seed).standard_normal(d)).astype(np.float32)
    info = steering.VectorInfo(model=model, site=f"layers.{layer}.resid_post", d_model=d,
                               position_rule="last_token", estimator="diff_of_means")
    return steering.SteeringVector(jnp.asarray(values), info)


def assert_same_vectors(got, vectors):
    assert list(got) == [v.metadata.site for v in vectors]
    for vector in vectors:
        other = got[vector.metadata.site]
        assert other.metadata.d_model == vector.metadata.d_model
        assert np.asarray(other.vector).tobytes() == np.asarray(vector.vector).tobytes()


def test_repeng_round_trip_is_exact(repeng):
    vectors = [vector_at(0, seed=1), vector_at(1, seed=2)]
    control = steering.to_repeng(vectors, model_type="llama")

    assert isinstance(control, repeng.ControlVector)
    assert control.model_type == "llama"
    assert sorted(control.directions) == [0, 1]
    assert all(d.dtype == np.float32 and d.shape == (D,) for d in control.directions.values())
    assert_same_vectors(steering.from_repeng(control, model="tiny-llama"), vectors)


def test_steering_vectors_round_trip_is_exact():
    import steering_vectors

    vectors = [vector_at(1, seed=3), vector_at(0, seed=4)]
    converted = steering.to_steering_vectors(vectors)

    assert isinstance(converted, steering_vectors.SteeringVector)
    assert converted.layer_type == "decoder_block"
    assert sorted(converted.layer_activations) == [0, 1]
    assert all(t.dtype == torch.float32 for t in converted.layer_activations.values())
    back = steering.from_steering_vectors(converted, model="tiny-llama")
    assert_same_vectors(back, sorted(vectors, key=lambda v: v.metadata.site))


def test_negative_layers_need_n_layers():
    import steering_vectors

    sv = steering_vectors.SteeringVector({-1: torch.ones(D)})
    with pytest.raises(ValueError, match="n_layers"):
        steering.from_steering_vectors(sv, model="m")
    assert list(steering.from_steering_vectors(sv, model="m", n_layers=2)) == ["layers.1.resid_post"]


@pytest.mark.parametrize("vectors, message", [
    ({"layers.1.resid_mid": np.ones(D, np.float32)}, "only 'layers.{i}.resid_post'"),
    ({0: np.ones(D, np.float32), 1: np.ones(D + 1, np.float32)}, "different widths"),
    ({0: np.ones(D, np.float32), "layers.0.resid_post": np.ones(D, np.float32)}, "two vectors"),
    ({}, "no vectors"),
])
def test_bad_input_is_refused(vectors, message):
    with pytest.raises(ValueError, match=message):
        steering.to_steering_vectors(vectors)


def test_other_layer_types_are_refused():
    import steering_vectors

    with pytest.raises(ValueError, match="decoder_block"):
        steering.from_steering_vectors(steering_vectors.SteeringVector({0: torch.ones(D)}, "mlp"), model="m")


def test_missing_repeng_names_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "repeng", None)
    with pytest.raises(ImportError, match="pip install repeng"):
        steering.to_repeng(vector_at(1))


def our_steered_logits(lm, tokens, vectors, alpha):
    interventions = [Add(v.metadata.site, v.vector, alpha) for v in vectors]
    # Add broadcasts its [d_model] vector over [batch, seq, d_model], which this
    # directory's strict rank promotion (conftest.py) would refuse inside forward.
    with jax.numpy_rank_promotion("allow"):
        return np.asarray(lrt_jax.forward(lm, jnp.asarray(tokens), interventions=interventions))


@pytest.mark.parametrize("layers", [(0,), (1,), (0, 1)])
def test_steering_vectors_apply_equals_our_add(models, tokens, layers):
    hf_model, lm = models
    vectors = [vector_at(layer, seed=10 + layer, scale=2.0) for layer in layers]
    alpha = 1.5
    with torch.no_grad():
        clean = hf_model(torch.from_numpy(tokens).long()).logits.numpy()
        with steering.to_steering_vectors(vectors).apply(hf_model, multiplier=alpha):
            steered = hf_model(torch.from_numpy(tokens).long()).logits.numpy()

    assert np.abs(steered - clean).max() > 100 * LOGIT_TOLERANCE  # the vector does something
    np.testing.assert_allclose(our_steered_logits(lm, tokens, vectors, alpha), steered, atol=LOGIT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("layers", [(0,), (1,), (0, 1)])
def test_repeng_control_model_equals_our_add(repeng, checkpoint, models, tokens, layers):
    _, lm = models
    # ControlModel mutates the model it wraps, so it gets its own copy.
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
    vectors = [vector_at(layer, seed=20 + layer, scale=2.0) for layer in layers]
    coeff = -0.75
    control_model = repeng.ControlModel(hf_model, list(layers))
    control_model.set_control(steering.to_repeng(vectors, model_type="llama"), coeff)
    ids = torch.from_numpy(tokens).long()
    # ControlModule builds its padding mask from position_ids as [batch, seq]; transformers 5
    # hands the blocks [1, seq] unless they are passed, so pass them (no padding: all ones).
    positions = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
    with torch.no_grad():
        steered = control_model(ids, position_ids=positions).logits.numpy()
        control_model.reset()
        clean = control_model(ids, position_ids=positions).logits.numpy()

    assert np.abs(steered - clean).max() > 100 * LOGIT_TOLERANCE
    np.testing.assert_allclose(our_steered_logits(lm, tokens, vectors, coeff), steered, atol=LOGIT_TOLERANCE, rtol=0)


def test_train_steering_vector_equals_our_diff_of_means(checkpoint, models):
    import steering_vectors

    hf_model, lm = models
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
    pairs = [("w1 w2 w3 w4", "w1 w2 w3 w9"), ("w7 w8 w5", "w7 w8 w6"), ("w10 w11 w12 w13 w14", "w10 w20 w30")]
    trained = steering_vectors.train_steering_vector(hf_model, tokenizer, pairs, layers=[0, 1])
    ours = steering.from_steering_vectors(trained, model="tiny-llama")

    sites = ["layers.0.resid_post", "layers.1.resid_post"]

    def last_token_acts(texts):
        rows = {site: [] for site in sites}
        for text in texts:
            ids = jnp.asarray(tokenizer([text], return_tensors="np")["input_ids"], dtype=jnp.int32)
            with jax.numpy_rank_promotion("allow"):  # the forward pass broadcasts (see our_steered_logits)
                acts = lrt_jax.capture(lm, ids, sites, reduce="last")
            for site in sites:
                rows[site].append(np.asarray(acts[site]).reshape(-1))
        return {site: np.stack(r) for site, r in rows.items()}

    positive = last_token_acts([p for p, _ in pairs])
    negative = last_token_acts([n for _, n in pairs])
    for site in sites:
        expected = np.asarray(steering.diff_of_means(positive[site], negative[site]).vector)
        got = np.asarray(ours[site].vector)
        assert np.linalg.norm(got - expected) <= 1e-5 * np.linalg.norm(expected)
