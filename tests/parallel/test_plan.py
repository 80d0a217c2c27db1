"""``lrt_jax.parallel.plan`` / ``lrt-jax plan`` against hand counts of tiny models' parameters and flops."""

from __future__ import annotations

import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrt_jax
from lrt_jax.cli import main
from lrt_jax.loading import hf_config_from_model_config
from lrt_jax.parallel import plan

LLAMA = lrt_jax.ModelConfig("llama", 128, 64, 2, 4, 2, 16, 128, max_position_embeddings=64)
MIXTRAL = lrt_jax.ModelConfig("mixtral", 128, 64, 2, 4, 2, 16, 128, max_position_embeddings=64,
                              n_experts=4, top_k=2, moe_d_ff=32)
BATCH, SEQ = 8, 32
FIELDS = {"fits", "per_device_bytes", "hbm_bytes", "flops", "ideal_flops", "flops_ratio", "collective_bytes",
          "compile_s", "params_total", "params_active"}


def hand_params(c) -> tuple[int, int, int]:
    """(total, active, 1-D) parameter counts of a tiny llama/mixtral written out from the architecture."""
    d, h, kv, hd, v = c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size
    attention = d * h * hd + 2 * d * kv * hd + h * hd * d
    experts = c.n_experts * 3 * d * c.moe_d_ff
    mlp = (experts + d * c.n_experts) if c.is_moe else 3 * d * c.d_ff
    norms = 2 * d
    total = v * d + c.n_layers * (attention + mlp + norms) + d + (0 if c.tie_embeddings else v * d)
    active = total - c.n_layers * experts * (c.n_experts - c.top_k) // max(c.n_experts, 1)
    return total, active, (2 * c.n_layers + 1) * d


def hand_flops(c, tokens: int, seq: int, *, head: bool) -> int:
    """Matmul flops: 2·weights·tokens (no embedding gather) plus QKᵀ and AV of causal-free full attention."""
    _, active, _ = hand_params(c)
    weights = active - c.vocab_size * c.d_model * (1 if head else 2)
    scores = 2 * 2 * tokens * seq * c.n_heads * c.head_dim * c.n_layers
    return 2 * weights * tokens + scores


def test_parameter_counts_match_init_params_and_the_hand_count():
    for config in (LLAMA, MIXTRAL):
        result = plan(config, topology="cpu:8", mesh="data=8", batch=BATCH, seq=SEQ, job="forward")
        leaves = jax.tree.leaves(lrt_jax.model.init_params(config, jax.random.key(0)))
        assert result.params_total == sum(leaf.size for leaf in leaves) == hand_params(config)[0]
        assert result.params_active == hand_params(config)[1]
    assert MIXTRAL.n_experts > MIXTRAL.top_k and hand_params(MIXTRAL)[1] < hand_params(MIXTRAL)[0]


@pytest.mark.parametrize("job", ["capture", "forward"])
def test_dense_flops_against_the_hand_count_and_no_collectives_on_data_parallel(job):
    result = plan(LLAMA, topology="cpu:8", mesh="data=8", batch=BATCH, seq=SEQ, job=job)
    assert FIELDS <= set(json.loads(result.to_json()))
    expected = hand_flops(LLAMA, BATCH * SEQ, SEQ, head=job == "forward")
    # XLA also counts softmax, norms, RoPE and activations: a few percent above the matmuls.
    assert expected <= result.flops <= 1.25 * expected
    assert 1.0 <= result.flops_ratio <= 1.6
    assert result.ideal_flops == 2 * (hand_params(LLAMA)[1] - LLAMA.vocab_size * LLAMA.d_model
                                      * (1 if job == "forward" else 2)) * BATCH * SEQ
    assert all(v == 0 for v in result.collective_bytes.values()), result.collective_bytes


def test_fsdp_splits_the_parameters_and_gathers_them():
    total, _, one_d = hand_params(LLAMA)
    inputs = BATCH * SEQ * (4 + 1) // 8                      # int32 tokens and bool mask, batch-split
    # bf16 matrices split eight ways; the 1-D norm scales stay whole on every device
    expected = (total - one_d) * 2 // 8 + one_d * 2 + inputs
    forward = plan(LLAMA, topology="cpu:8", mesh="fsdp=8", batch=BATCH, seq=SEQ, job="forward")
    assert forward.per_device_bytes["arguments"] == expected
    result = plan(LLAMA, topology="cpu:8", mesh="fsdp=8", batch=BATCH, seq=SEQ, job="capture")
    head = LLAMA.vocab_size * LLAMA.d_model * 2 // 8         # a capture of resid_post drops the unused head
    assert expected - head - 256 <= result.per_device_bytes["arguments"] <= expected - head
    assert result.collective_bytes["all-gather"] > 0 and sum(result.collective_bytes.values()) > 0
    bytes_ = result.per_device_bytes
    assert bytes_["total"] <= bytes_["arguments"] + bytes_["outputs"] + bytes_["temporaries"]
    # capture of every resid_post: bf16 [batch/8, seq, d_model] per layer (plus a few bytes of tuple)
    activations = LLAMA.n_layers * BATCH * SEQ * LLAMA.d_model * 2 // 8
    assert activations <= bytes_["outputs"] <= activations + 64
    assert result.fits and result.hbm_bytes > 0


def test_moe_flops_cover_the_active_experts_and_generate_compiles():
    result = plan(MIXTRAL, topology="cpu:8", mesh="data=8", batch=BATCH, seq=SEQ, job="capture")
    assert result.flops >= hand_flops(MIXTRAL, BATCH * SEQ, SEQ, head=False)
    generation = plan(LLAMA, topology="cpu:8", mesh="fsdp=8", batch=BATCH, seq=SEQ, job="generate",
                      sites="layers.1.resid_post", max_new_tokens=4)
    assert generation.ideal_flops == 2 * (hand_params(LLAMA)[1] - LLAMA.vocab_size * LLAMA.d_model) * BATCH * 36
    assert generation.per_device_bytes["total"] > 0


def test_v5e_topology_compiles_without_a_tpu():
    # Wider than LLAMA so that TPU's tile padding of small buffers is a small part of the bytes.
    config = LLAMA.replace(vocab_size=1024, d_model=512, n_heads=8, n_kv_heads=4, head_dim=64, d_ff=1024)
    result = plan(config, topology="v5e:2x4", mesh="fsdp=8", batch=BATCH, seq=SEQ, job="forward")
    assert result.hbm_bytes == 16 * 2**30 and result.fits
    total, _, one_d = hand_params(config)
    expected = (total - one_d) * 2 // 8 + one_d * 2 + BATCH * SEQ * 5 // 8
    assert expected <= result.per_device_bytes["arguments"] <= 1.05 * expected
    assert result.flops >= hand_flops(config, BATCH * SEQ, SEQ, head=True)
    assert result.collective_bytes["all-gather"] > 0


def test_missing_libtpu_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "libtpu", None)
    with pytest.raises(ValueError, match=r'pip install -e "\.\[tpu-plan\]"'):
        plan(LLAMA, topology="v5e:2x4", batch=BATCH, seq=SEQ)


def test_cli_json_last_line_and_table(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(hf_config_from_model_config(LLAMA)))
    argv = ["plan", "--config", str(tmp_path), "--topology", "cpu:8", "--mesh", "data=8", "--batch", "8",
            "--seq", "32", "--job", "forward"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert FIELDS <= set(result) and result["params_total"] == hand_params(LLAMA)[0]
    assert set(result["per_device_bytes"]) == {"arguments", "outputs", "temporaries", "total"}
    assert main([*argv[:2], str(tmp_path / "config.json"), *argv[3:]]) == 0
    assert "flops ratio" in capsys.readouterr().out
    # Execution settings reach the compiled program and the report; a published name stands for its config.
    assert main([*argv, "--execution", "attention=blockwise,attention_block=16,scan_layers=true", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["execution"]["attention"] == "blockwise" and result["execution"]["attention_block"] == 16
    assert result["execution"]["scan_layers"] is True and result["execution"]["mesh"] == {"data": 8, "fsdp": 1,
                                                                                          "tensor": 1}
    small = ["plan", "--config", "gemma-2-2b", "--topology", "cpu:8", "--mesh", "fsdp=8", "--batch", "8",
             "--seq", "16", "--job", "capture", "--sites", "layers.0.resid_post", "--json"]
    assert main(small) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["params_total"] == 2_614_341_888


@pytest.mark.parametrize("change, message", [
    (["--job", "train"], "job 'train' is unknown"),
    (["--topology", "v9x:2x2"], "unknown TPU generation"),
    (["--topology", "cpu:x"], "positive integer"),
    (["--topology", "cpu:64"], "XLA_FLAGS"),
    (["--topology", "v5e"], "GENERATION:SHAPE"),
    (["--mesh", "fsdp=4"], "spans 4 devices but topology 'cpu:8' has 8"),
    (["--execution", "moe"], "not KEY=VALUE"),
    (["--execution", "flash=yes"], "choose among attention"),
    (["--sites", "layers.9.resid_post"], "layers.9"),
])
def test_cli_errors_name_the_problem(tmp_path, capsys, change, message):
    (tmp_path / "config.json").write_text(json.dumps(hf_config_from_model_config(LLAMA)))
    argv = {"--config": str(tmp_path), "--topology": "cpu:8", "--mesh": "fsdp=8", "--batch": "8", "--seq": "32",
            "--job": "capture"}
    argv.update(dict(zip(change[::2], change[1::2])))
    assert main(["plan", *(x for kv in argv.items() for x in kv), "--json"]) == 1
    assert message in capsys.readouterr().err


def test_cli_missing_config(tmp_path, capsys):
    assert main(["plan", "--config", str(tmp_path), "--batch", "8", "--seq", "32"]) == 1
    assert "no config.json" in capsys.readouterr().err


def test_sparse_moe_on_v5e_costs_the_active_experts_and_never_gathers_expert_weights():
    # 8 experts, top 2: the dense dispatch computes 4× the expert flops; sparse computes the chosen ones.
    config = MIXTRAL.replace(vocab_size=1024, d_model=512, n_heads=8, n_kv_heads=4, head_dim=64, n_experts=8,
                             top_k=2, moe_d_ff=1024)
    batch, seq = 8, 128
    tokens = batch * seq
    d, f, e, k = config.d_model, config.moe_d_ff, config.n_experts, config.top_k
    expert_flops = 2 * 3 * d * f * tokens * config.n_layers
    results = {moe: plan(config, topology="v5e:2x4", mesh="fsdp=8", batch=batch, seq=seq, job="capture",
                         execution={"moe": moe, "attention": "materialized"})
               for moe in ("dense", "sparse")}
    assert results["sparse"].execution["moe"] == "sparse"
    # The dense program pays for every expert, the sparse one for top_k of them (plus attention and the router).
    extra = results["dense"].flops - results["sparse"].flops
    assert extra == pytest.approx(expert_flops * (e - k), rel=0.05)
    assert results["sparse"].flops == pytest.approx(hand_flops(config, tokens, seq, head=False), rel=0.1)
    # Expert weights stay where they are (split along their width over fsdp); only tokens move.
    expert_weight_bytes = 2 * 3 * e * d * f * config.n_layers
    assert results["sparse"].collective_bytes["all-gather"] < expert_weight_bytes / 4
    assert results["dense"].collective_bytes["all-gather"] + results["dense"].collective_bytes["all-reduce"] > 0


def test_collective_bytes_counts_repeated_async_fusions_once_and_async_pairs_at_done():
    from lrt_jax.parallel.plan import collective_bytes

    hlo = "\n".join([
        # TPU's async collective fusion repeats one gather in three computations, with one channel.
        *['  %all-gather.1 = bf16[64,32]{1,0} all-gather(%p), channel_id=7, metadata={op_name="jit(f)/q/dot"}'] * 3,
        '  %all-gather.2 = f32[8,4]{1,0} all-gather(%q), channel_id=8, metadata={op_name="jit(f)/k/dot"}',
        # shard_map's collectives share channel 1; their source ops differ.
        *[f'  %all_gather.{i} = f32[2,4]{{1,0}} all-gather(%x), channel_id=1, metadata={{op_name="jit(f)/layers_{i}/ag"}}'
          for i in range(3)],
        "  %ars = (f32[16], f32[16]) all-reduce-start(%r), channel_id=9",
        "  %ard = f32[16] all-reduce-done(%ars)",
    ])
    counts = collective_bytes(hlo)
    assert counts["all-gather"] == 64 * 32 * 2 + 8 * 4 * 4 + 3 * 2 * 4 * 4
    assert counts["all-reduce"] == 16 * 4
