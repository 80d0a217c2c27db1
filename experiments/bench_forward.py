"""Throughput of ``lrt_jax.capture`` of every ``resid_post`` site vs HF PyTorch eager.

Both sides run the same Llama-style config with the same random weights (the HF model
is saved as a checkpoint and loaded with ``lrt_jax.load``, so the comparison also
checks that both compute the same hidden states). HF runs eager attention with
``output_hidden_states=True``; ours is the jitted capture, warm. Prints tokens/s and
the ratio, writes ``results/bench_forward.json`` and ``.png``.

On an accelerator (``--gpu-mfu``) it also measures bf16 tokens/s and model FLOP
utilisation of a ~1B config: MFU = 2·N_params·tokens/s (+ attention flops) / peak.

    python experiments/bench_forward.py                 # CPU: d=512, 8 layers, seq 256, batch 8
    python experiments/bench_forward.py --gpu-mfu --peak-tflops 989
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import lrt_jax
from _bench_utils import RESULTS_DIR, time_call, write_results


def hf_llama(d_model: int, n_layers: int, vocab: int):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layers,
        num_attention_heads=d_model // 64, num_key_value_heads=d_model // 128, max_position_embeddings=4096,
        attn_implementation="eager",
    )
    return transformers.LlamaForCausalLM(config).eval()


def bench_cpu(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    model = hf_llama(args.d_model, args.layers, args.vocab)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        lm = lrt_jax.load(tmp)
    tokens = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.seq))
    sites = lrt_jax.all_sites(lm.config, "resid_post")

    def ours():
        jax.block_until_ready(lrt_jax.capture(lm, tokens, sites))

    def theirs():
        with torch.inference_mode():
            model(torch.from_numpy(tokens), output_hidden_states=True)

    def theirs_without_head():
        # A careful HF user skips the LM head when only hidden states are wanted;
        # our capture gets that for free because XLA prunes the unused logits.
        with torch.inference_mode():
            model.model(torch.from_numpy(tokens), output_hidden_states=True)

    with torch.inference_mode():
        reference = model(torch.from_numpy(tokens), output_hidden_states=True).hidden_states
    captured = lrt_jax.capture(lm, tokens, sites)
    max_error = max(
        float(np.abs(np.asarray(captured[s]) - reference[i + 1].numpy()).max()) for i, s in enumerate(sites[:-1])
    )
    n_tokens = args.batch * args.seq
    t_ours, t_hf = time_call(ours, repeats=args.repeats), time_call(theirs, repeats=args.repeats)
    t_hf_base = time_call(theirs_without_head, repeats=args.repeats)
    result = {
        "config": vars(args), "tokens_per_s_lrt_jax": n_tokens / t_ours, "tokens_per_s_hf_torch_eager": n_tokens / t_hf,
        "tokens_per_s_hf_torch_eager_base_model": n_tokens / t_hf_base,
        "ratio_lrt_jax_over_hf": t_hf / t_ours, "ratio_lrt_jax_over_hf_base_model": t_hf_base / t_ours,
        "max_abs_error_resid_post": max_error,
    }
    print(f"capture all resid_post, d={args.d_model}, {args.layers} layers, batch {args.batch} x seq {args.seq}")
    print(f"  lrt_jax : {result['tokens_per_s_lrt_jax']:10.0f} tokens/s")
    print(f"  HF torch: {result['tokens_per_s_hf_torch_eager']:10.0f} tokens/s (eager, output_hidden_states)")
    print(f"  HF torch: {result['tokens_per_s_hf_torch_eager_base_model']:10.0f} tokens/s (eager, base model, no LM head)")
    print(f"  ratio   : {result['ratio_lrt_jax_over_hf']:.2f}x vs full model, "
          f"{result['ratio_lrt_jax_over_hf_base_model']:.2f}x vs base model (max |diff| of hidden states {max_error:.1e})")
    return result


def bench_gpu_mfu(args) -> dict:
    """bf16 capture throughput and MFU of a ~1B Llama-style config on the default accelerator."""
    config = lrt_jax.ModelConfig(
        "llama", vocab_size=32000, d_model=2048, n_layers=16, n_heads=16, n_kv_heads=8, head_dim=128, d_ff=8192,
        max_position_embeddings=4096,
    )
    params = lrt_jax.init_params(config, jax.random.key(0), jnp.bfloat16)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    batch, seq = args.gpu_batch, args.gpu_seq
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (batch, seq))
    tokens_device = jnp.asarray(tokens, jnp.int32)
    step = jax.jit(lambda p, t: lrt_jax.forward(lrt_jax.LM(config, p), t))

    seconds = time_call(lambda: jax.block_until_ready(step(params, tokens_device)), repeats=args.repeats)
    tokens_per_s = batch * seq / seconds
    attention_flops = 4 * config.n_layers * seq * config.n_heads * config.head_dim  # per token, causal not halved
    flops_per_token = 2 * n_params + attention_flops
    mfu = flops_per_token * tokens_per_s / (args.peak_tflops * 1e12)
    print(f"GPU bf16 forward, {n_params / 1e9:.2f}B params, batch {batch} x seq {seq}: "
          f"{tokens_per_s:,.0f} tokens/s, MFU {mfu:.1%} of {args.peak_tflops} TFLOP/s")
    return {"gpu_params": n_params, "gpu_tokens_per_s": tokens_per_s, "gpu_mfu": mfu, "device": jax.devices()[0].device_kind}


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    names = ["lrt_jax capture", "HF eager (LM)", "HF eager (base model)"]
    values = [result["tokens_per_s_lrt_jax"], result["tokens_per_s_hf_torch_eager"],
              result["tokens_per_s_hf_torch_eager_base_model"]]
    ax.barh(names, values, color=["tab:blue", "tab:gray", "tab:gray"])
    ax.set_xlabel("tokens / s (higher is better)")
    ax.set_title(f"capture all resid_post ({result['ratio_lrt_jax_over_hf']:.2f}x)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (match the cores JAX uses)")
    parser.add_argument("--gpu-mfu", action="store_true", help="also measure bf16 MFU of a ~1B config")
    parser.add_argument("--gpu-batch", type=int, default=16)
    parser.add_argument("--gpu-seq", type=int, default=2048)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the accelerator")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()

    result = {} if args.skip_cpu else bench_cpu(args)
    if args.gpu_mfu:
        result.update(bench_gpu_mfu(args))
    name = "bench_forward" if not args.gpu_mfu else f"bench_forward_{jax.default_backend()}"
    path = write_results(name, result, args.out)
    if not args.skip_cpu:
        plot(result, path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
