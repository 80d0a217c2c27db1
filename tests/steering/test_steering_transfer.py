"""Transfer modes, diagnostics and controls against NumPy hand computations; transfers under jit and vmap."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrt_jax import steering

D_SOURCE, D_TARGET = 6, 4
RNG = np.random.default_rng(0)
A = RNG.normal(size=(D_SOURCE, D_TARGET)).astype(np.float32)
B = RNG.normal(size=D_TARGET).astype(np.float32)
MU_POS = RNG.normal(size=D_SOURCE).astype(np.float32)
MU_NEG = RNG.normal(size=D_SOURCE).astype(np.float32)
INFO = steering.VectorInfo(
    model="small", site="layers.1.resid_post", d_model=D_SOURCE, position_rule="last_token", estimator="diff_of_means"
)
SOURCE = steering.SteeringVector(jnp.asarray(MU_POS - MU_NEG), INFO)


def _transfer(**kwargs):
    return steering.transfer_vector(
        SOURCE, (A, B), target_model="large", target_site="layers.3.resid_post", **kwargs
    )


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("linear", (MU_POS - MU_NEG) @ A),
        ("affine", (MU_POS - MU_NEG) @ A + B),
        ("means", (MU_POS @ A + B) - (MU_NEG @ A + B)),
    ],
)
def test_modes_equal_hand_computation(mode, expected):
    result = _transfer(mode=mode, means=(MU_POS, MU_NEG))
    assert isinstance(result, steering.SteeringVector)
    np.testing.assert_allclose(result.vector, expected, rtol=1e-5, atol=1e-5)
    info = result.metadata
    assert (info.model, info.site, info.d_model, info.transfer_mode) == ("large", "layers.3.resid_post", 4, mode)
    assert info.transferred_from == INFO
    assert (info.estimator, info.position_rule) == (INFO.estimator, INFO.position_rule)


def test_map_info_records_solver_and_both_ends_under_the_callers_entries():
    info = _transfer(mode="linear", map_info={"alpha": "10", "solver": "ridge"}).metadata
    assert dict(info.map_info) == {"solver": "ridge", "alpha": "10", "source_model": "small",
                                   "source_site": "layers.1.resid_post", "target_model": "large",
                                   "target_site": "layers.3.resid_post"}
    assert dict(_transfer(mode="linear").metadata.map_info)["solver"] == "explicit (A, b)"


def test_means_mode_uses_the_given_nonlinear_apply():
    def apply_tanh(state, x):
        linear, bias = state
        return jnp.tanh(x @ linear + bias[None, :])

    result = _transfer(mode="means", means=(MU_POS, MU_NEG), apply_fn=apply_tanh)
    expected = np.tanh(MU_POS @ A + B) - np.tanh(MU_NEG @ A + B)
    np.testing.assert_allclose(result.vector, expected, rtol=1e-5, atol=1e-5)


def test_renormalisation_and_diagnostics_equal_numpy():
    native = RNG.normal(size=D_TARGET).astype(np.float32)
    result = _transfer(mode="affine", target_norm=2.5)
    mapped = (MU_POS - MU_NEG) @ A + B
    np.testing.assert_allclose(result.vector, mapped / np.linalg.norm(mapped) * 2.5, rtol=1e-5)
    assert result.metadata.normalisation == "norm=2.5"
    diagnostics = steering.transfer_diagnostics(SOURCE, result, native)
    expected_cosine = mapped @ native / (np.linalg.norm(mapped) * np.linalg.norm(native))
    assert float(diagnostics.cosine_with_native) == pytest.approx(expected_cosine, rel=1e-5)
    assert float(steering.cosine_similarity(result, native)) == pytest.approx(expected_cosine, rel=1e-5)
    assert float(diagnostics.norm) == pytest.approx(2.5, rel=1e-5)
    assert float(diagnostics.source_norm) == pytest.approx(np.linalg.norm(MU_POS - MU_NEG), rel=1e-5)
    assert float(diagnostics.native_norm) == pytest.approx(np.linalg.norm(native), rel=1e-5)
    without_native = steering.transfer_diagnostics(SOURCE, result)
    assert without_native.cosine_with_native is None and without_native.native_norm is None


def test_transfer_rejects_mismatches():
    with pytest.raises(ValueError, match="source width 5"):
        steering.transfer_vector(SOURCE, (A[:5], B), mode="linear", target_model="l", target_site="s")
    with pytest.raises(ValueError, match="means="):
        _transfer(mode="means")
    with pytest.raises(ValueError, match="mode must be"):
        _transfer(mode="quadratic")
    with pytest.raises(ValueError, match="native has shape"):
        steering.transfer_diagnostics(SOURCE, _transfer(mode="linear"), np.ones(3, np.float32))


def test_random_control_has_equal_norm():
    control = steering.random_vector_like(SOURCE, jax.random.key(0))
    np.testing.assert_allclose(np.linalg.norm(control.vector), np.linalg.norm(MU_POS - MU_NEG), rtol=1e-5)
    assert control.metadata == dataclasses.replace(INFO, estimator="random_like(diff_of_means)")


@pytest.mark.parametrize("d_target", [4, 9])
def test_unmapped_control_pads_or_truncates(d_target):
    control = steering.unmapped_vector(SOURCE, d_target, target_model="large", target_site="layers.3.resid_post")
    expected = np.zeros(d_target, np.float32)
    width = min(d_target, D_SOURCE)
    expected[:width] = (MU_POS - MU_NEG)[:width]
    np.testing.assert_array_equal(control.vector, expected)
    assert (control.metadata.d_model, control.metadata.transfer_mode) == (d_target, "unmapped")


def test_transfer_through_a_fitted_ridge_mapper_matches_sklearn():
    from sklearn.linear_model import Ridge

    from lrt_jax.mappers import ridge

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, D_SOURCE)).astype(np.float32)
    y = (x @ A + B + rng.normal(size=(200, D_TARGET)) * 0.1).astype(np.float32)
    mapper = ridge(alpha=1.0)
    # lrt_jax.mappers broadcasts [n, d] - [d] implicitly; strictness here targets steering code.
    with jax.numpy_rank_promotion("allow"):
        state = mapper.fit(x, y)
    reference = Ridge(alpha=1.0).fit(x.astype(np.float64), y.astype(np.float64))
    v = MU_POS - MU_NEG

    linear = steering.transfer_vector(SOURCE, state, mode="linear", target_model="l", target_site="s")
    affine = steering.transfer_vector(SOURCE, state, mode="affine", target_model="l", target_site="s")
    with jax.numpy_rank_promotion("allow"):
        means = steering.transfer_vector(
            SOURCE, state, mode="means", means=(MU_POS, MU_NEG), apply_fn=mapper.apply,
            target_model="l", target_site="s",
        )
    np.testing.assert_allclose(linear.vector, v @ reference.coef_.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(affine.vector, v @ reference.coef_.T + reference.intercept_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(means.vector, linear.vector, rtol=1e-4, atol=1e-4)
    assert dict(linear.metadata.map_info)["solver"] == type(state).__name__


def test_transfer_traces_under_jit_and_vmaps_over_a_stack_of_vectors():
    transfer = jax.jit(steering.transfer_vector, static_argnames=("mode", "target_model", "target_site"))
    jitted = transfer(SOURCE, (A, B), mode="affine", target_model="large", target_site="layers.3.resid_post")
    np.testing.assert_allclose(jitted.vector, (MU_POS - MU_NEG) @ A + B, rtol=1e-5, atol=1e-5)
    assert jitted.metadata == _transfer(mode="affine").metadata

    stack = steering.SteeringVector(jnp.asarray(np.stack([MU_POS, MU_NEG])), INFO)
    mapped = jax.vmap(lambda v: steering.transfer_vector(v, (A, B), mode="linear", target_model="large",
                                                         target_site="layers.3.resid_post"))(stack)
    np.testing.assert_allclose(mapped.vector, np.stack([MU_POS, MU_NEG]) @ A, rtol=1e-5, atol=1e-5)
    assert mapped.metadata.d_model == D_TARGET


def test_with_controls_equals_the_individual_calls():
    native = steering.SteeringVector(jnp.asarray(RNG.normal(size=D_TARGET).astype(np.float32)),
                                     dataclasses.replace(INFO, model="large", site="layers.3.resid_post",
                                                         d_model=D_TARGET))
    key = jax.random.key(3)
    common = dict(target_model="large", target_site="layers.3.resid_post")
    vectors = steering.with_controls(SOURCE, (A, B), key=key, native=native, n_random=3, **common)
    assert list(vectors) == ["native", "transferred_linear", "transferred_affine", "unmapped",
                             "random_0", "random_1", "random_2"]
    assert vectors["native"] is native
    for mode in ("linear", "affine"):
        expected = steering.transfer_vector(SOURCE, (A, B), mode=mode, **common)
        np.testing.assert_array_equal(vectors[f"transferred_{mode}"].vector, expected.vector)
        assert vectors[f"transferred_{mode}"].metadata == expected.metadata
    np.testing.assert_array_equal(vectors["unmapped"].vector, (MU_POS - MU_NEG)[:D_TARGET])
    for index, random_key in enumerate(jax.random.split(key, 3)):
        np.testing.assert_array_equal(vectors[f"random_{index}"].vector,
                                      steering.random_vector_like(native, random_key).vector)
        assert float(jnp.linalg.norm(vectors[f"random_{index}"].vector)) == pytest.approx(
            float(jnp.linalg.norm(native.vector)), rel=1e-5)

    single = steering.with_controls(SOURCE, (A, B), key=key, modes=("affine",), **common)
    assert list(single) == ["transferred_affine", "unmapped", "random"]
    np.testing.assert_array_equal(single["random"].vector,
                                  steering.random_vector_like(single["transferred_affine"], key).vector)
    with pytest.raises(ValueError, match="modes is empty"):
        steering.with_controls(SOURCE, (A, B), key=key, modes=(), **common)
