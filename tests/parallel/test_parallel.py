"""Sharded runs give the numbers of one device, and parameters are really split."""

import jax
import numpy as np
import pytest

import lrt_jax
from lrt_jax import parallel

MESHES = ["data=8", "data=4,fsdp=2", "data=2,fsdp=2,tensor=2", "tensor=8"]

CONFIGS = {
    "llama": lrt_jax.ModelConfig("llama", 128, 64, 2, 4, 2, 16, 96),
    "mixtral": lrt_jax.ModelConfig("mixtral", 128, 64, 2, 4, 2, 16, 96, n_experts=4, top_k=2, moe_d_ff=32),
}


@pytest.fixture(scope="module", autouse=True)
def _eight_devices():
    if jax.device_count() < 8:
        pytest.fail("tests/conftest.py must give 8 CPU devices (XLA_FLAGS was set too late?)")


def _model(family):
    config = CONFIGS[family]
    return lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(1)))


def test_mesh_spec_parsing():
    assert parallel.parse_mesh_spec("data=4,fsdp=2") == {"data": 4, "fsdp": 2, "tensor": 1}
    mesh = parallel.make_mesh("data=-1,tensor=2")
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    with pytest.raises(parallel.MeshError, match="needs 6 devices but 8"):
        parallel.make_mesh("data=3,fsdp=2")
    with pytest.raises(parallel.MeshError, match="Unknown mesh axes"):
        parallel.make_mesh("model=8")
    with pytest.raises(parallel.MeshError, match="not of the form"):
        parallel.make_mesh("data:8")


SITES = ["layers.0.resid_post", "layers.1.resid_post", "layers.1.attn_out", "logits"]


@pytest.fixture(scope="module")
def single_device_reference():
    """Per family: the model, a left-padded batch, and its activations on one device."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 128, (8, 12))
    mask = np.ones((8, 12), np.int32)
    mask[::2, :3] = 0  # left padding in half the rows
    cases = {}
    for family in CONFIGS:
        lm = _model(family)
        cases[family] = lm, tokens, mask, lrt_jax.capture(lm, tokens, SITES, attention_mask=mask)
    return cases


@pytest.mark.parametrize("family,spec", [("llama", spec) for spec in MESHES]
                         + [("mixtral", "data=2,fsdp=2,tensor=2"), ("mixtral", "tensor=8")])
def test_sharded_capture_equals_one_device(single_device_reference, family, spec):
    lm, tokens, mask, reference = single_device_reference[family]
    mesh = parallel.make_mesh(spec)
    sharded = parallel.shard_lm(lm, mesh)
    captured = lrt_jax.capture(sharded, parallel.shard_batch(tokens, mesh), SITES,
                               attention_mask=parallel.shard_batch(mask, mesh))
    for site in SITES:  # "logits" is the forward pass's output
        np.testing.assert_allclose(np.asarray(captured[site]), np.asarray(reference[site]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec,expected", [
    ("data=8", (64, 64)),                 # replicated over data
    ("data=4,fsdp=2", (32, 64)),          # embed axis split over fsdp
    ("data=2,fsdp=2,tensor=2", (32, 32)), # and heads over tensor
    ("tensor=8", (64, 8)),
])
def test_parameters_are_really_sharded(spec, expected):
    lm = parallel.shard_lm(_model("llama"), parallel.make_mesh(spec))
    kernel = lm.params["layers_0"]["attn"]["q_proj"]["kernel"]
    assert kernel.shape == (64, 64)
    assert set(parallel.local_shard_shapes(kernel)) == {expected}
    assert kernel.sharding.mesh.shape == parallel.make_mesh(spec).shape


def test_expert_weights_split_on_mlp_width_over_tensor():
    lm = parallel.shard_lm(_model("mixtral"), parallel.make_mesh("tensor=8"))
    gate = lm.params["layers_0"]["moe"]["gate_proj"]
    assert gate.shape == (4, 64, 32)
    assert set(parallel.local_shard_shapes(gate)) == {(4, 64, 4)}


def test_batch_rows_split_over_data_and_fsdp():
    mesh = parallel.make_mesh("data=4,fsdp=2")
    tokens = parallel.shard_batch(np.zeros((16, 5), np.int32), mesh)
    assert set(parallel.local_shard_shapes(tokens)) == {(2, 5)}


def test_indivisible_parameter_dimension_is_replicated_with_a_warning():
    config = lrt_jax.ModelConfig("llama", 100, 48, 1, 3, 3, 16, 72)  # 3 heads, vocab 100
    abstract_params = jax.eval_shape(lambda: lrt_jax.init_params(config, jax.random.key(0)))
    mesh = parallel.make_mesh("tensor=8")
    with pytest.warns(UserWarning, match=r"embed/embedding \(100, 48\): dimension 0 \(100\) replicated over "
                                         r"'tensor' \(size 8\)"):
        shardings = parallel.param_shardings(abstract_params, mesh)
    # the vocabulary (100) is replicated over tensor=8; the MLP width (72 = 8 × 9) is still split
    assert shardings["embed"]["embedding"].spec == jax.sharding.PartitionSpec(None, "fsdp")
    assert shardings["layers_0"]["mlp"]["up_proj"]["kernel"].spec == jax.sharding.PartitionSpec("fsdp", "tensor")


def test_indivisible_batch_is_refused_naming_axis_and_size():
    with pytest.raises(parallel.MeshError, match=r"batch of shape \(6, 4\).*size 6.*data×fsdp \(size 8\)"):
        parallel.shard_batch(np.zeros((6, 4), np.int32), parallel.make_mesh("data=8"))


@pytest.mark.parametrize("spec", ["data=4,tensor=2", "tensor=8"])
def test_gpt2_with_an_odd_vocabulary_loads_and_runs_on_tensor_meshes(tiny_hf_checkpoint, spec):
    """GPT-2's vocabulary (50257 in the real model, 101 here) divides no tensor axis: it is replicated."""
    path = tiny_hf_checkpoint("gpt2", vocab_size=101)
    reference = lrt_jax.load(path)
    tokens = np.random.default_rng(0).integers(0, 101, (4, 9))
    expected = lrt_jax.capture(reference, tokens, ["layers.1.resid_post", "logits"])
    with pytest.warns(UserWarning, match="replicated over 'tensor'"):
        sharded = lrt_jax.load(path, mesh=parallel.make_mesh(spec))
    assert set(parallel.local_shard_shapes(sharded.params["embed"]["embedding"])) == {(101, 64)}
    got = lrt_jax.capture(sharded, tokens, ["layers.1.resid_post", "logits"])
    for site, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[site]), np.asarray(value), atol=1e-5, rtol=0)


def test_rules_override_turns_tensor_parallelism_off():
    rules = tuple((name, None) if name != "batch" else (name, axes) for name, axes in parallel.DEFAULT_RULES)
    lm = parallel.shard_lm(_model("llama"), parallel.make_mesh("tensor=8"), rules)
    kernel = lm.params["layers_0"]["mlp"]["up_proj"]["kernel"]
    assert set(parallel.local_shard_shapes(kernel)) == {(64, 96)}


def test_host_batch_slice_single_process():
    assert parallel.host_batch_slice(12) == slice(0, 12)
    mesh = parallel.make_mesh("data=8")
    rows = np.arange(16 * 3).reshape(16, 3)
    global_rows = parallel.global_batch_from_host_slices(rows, mesh)
    np.testing.assert_array_equal(np.asarray(global_rows), rows)
    assert set(parallel.local_shard_shapes(global_rows)) == {(2, 3)}


def test_load_with_mesh_places_parameters_into_their_shardings(tiny_hf_checkpoint):
    path = tiny_hf_checkpoint("llama")
    reference = lrt_jax.load(path)
    mesh = parallel.make_mesh("data=2,fsdp=2,tensor=2")
    sharded = lrt_jax.load(path, mesh=mesh)
    expected = parallel.param_shardings(reference.params, mesh)
    for (path_key, leaf), want, ref in zip(jax.tree_util.tree_leaves_with_path(sharded.params),
                                           jax.tree.leaves(expected), jax.tree.leaves(reference.params)):
        assert leaf.sharding == want, path_key
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(ref))
    q = sharded.params["layers_0"]["attn"]["q_proj"]["kernel"]
    assert len(set(parallel.local_shard_shapes(q))) == 1 and parallel.local_shard_shapes(q)[0] != q.shape


@pytest.mark.parametrize("spec", MESHES)
def test_ridge_map_fitted_on_sharded_rows_equals_one_device(spec):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 24)).astype(np.float32)
    y = (x @ rng.standard_normal((24, 40)) + 0.1 * rng.standard_normal((256, 40))).astype(np.float32)
    mapper = lrt_jax.mappers.ridge(alphas=[0.1, 1.0, 10.0], select="gcv")
    reference = mapper.fit(x, y)
    mesh = parallel.make_mesh(spec)
    x_rows, y_rows = parallel.shard_batch(x, mesh), parallel.shard_batch(y, mesh)
    # Statistics summed across the devices holding the rows, then the closed-form fit.
    stats = jax.jit(lrt_jax.mappers.accumulate_stats)(lrt_jax.mappers.init_stats(24, 40), x_rows, y_rows)
    for sharded in (mapper.fit(x_rows, y_rows), mapper.fit_from_stats(stats)):
        assert float(sharded.alpha) == float(reference.alpha)
        for part in (lrt_jax.mappers.linear, lrt_jax.mappers.bias):
            np.testing.assert_allclose(np.asarray(part(sharded)), np.asarray(part(reference)), atol=1e-5, rtol=0)
