"""Speed of a vmapped α sweep vs a loop of calls, and of cached generation vs HF ``generate``.

Both parts use one Llama-style config with the same random weights (the HF model is
saved as a checkpoint and loaded with ``lrt_jax.load``).

* Sweep: logits of a ``[batch, seq]`` batch under ``Add(layers.{L/2}.resid_post, v, α)``
  for 16 values of α — one jitted ``jax.vmap`` over α vs a Python loop of 16 calls to
  the same warm jitted forward. Also checks that both give the same logits.
* Generation: greedy ``lrt_jax.generate`` (jitted, warm) vs HF PyTorch
  ``generate(do_sample=False)`` on CPU, same prompts; tokens/s counts new tokens of
  the whole batch. Also checks that both produce the same tokens.

Prints the ratios, writes ``results/bench_sweep.json`` and ``.png``::

    python experiments/bench_sweep.py            # d=256, 4 layers, batch 8, prompt 32, 64 new tokens
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import numpy as np
from _bench_utils import RESULTS_DIR, time_call, write_results

import lrt_jax
from lrt_jax import generate
from lrt_jax.interventions import Add


def hf_llama(args):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=4 * args.d_model,
        num_hidden_layers=args.layers, num_attention_heads=args.d_model // 64, num_key_value_heads=args.d_model // 128,
        max_position_embeddings=args.prompt + args.new_tokens, attn_implementation="eager",
    )
    return transformers.LlamaForCausalLM(config).eval()


def bench_sweep(lm, tokens, args) -> dict:
    site = f"layers.{args.layers // 2}.resid_post"
    vector = np.random.default_rng(1).normal(size=lm.config.d_model).astype(np.float32)
    alphas = np.linspace(-8.0, 8.0, args.alphas, dtype=np.float32)

    def logits_at(alpha):
        return lrt_jax.forward(lm, tokens, interventions=Add(site, vector, alpha))

    vmapped = jax.jit(jax.vmap(logits_at))

    def loop():
        return [jax.block_until_ready(logits_at(float(alpha))) for alpha in alphas]

    max_error = float(np.abs(np.asarray(vmapped(alphas)) - np.stack(loop())).max())
    t_vmapped = time_call(lambda: jax.block_until_ready(vmapped(alphas)), repeats=args.repeats)
    t_loop = time_call(loop, repeats=args.repeats)
    print(f"sweep of {args.alphas} alphas, Add at {site}, batch {args.batch} x seq {args.prompt}")
    print(f"  vmapped: {t_vmapped * 1e3:8.1f} ms   loop of jitted calls: {t_loop * 1e3:8.1f} ms   "
          f"speed-up {t_loop / t_vmapped:.2f}x (max |diff| {max_error:.1e})")
    return {"sweep_site": site, "sweep_seconds_vmapped": t_vmapped, "sweep_seconds_loop": t_loop,
            "sweep_speedup_vmapped_over_loop": t_loop / t_vmapped, "sweep_max_abs_diff": max_error}


def bench_generation(lm, hf_model, tokens, args) -> dict:
    import torch

    def ours():
        return np.asarray(jax.block_until_ready(generate(lm, tokens, max_new_tokens=args.new_tokens).tokens))

    def theirs():
        with torch.inference_mode():
            out = hf_model.generate(torch.from_numpy(tokens).long(), attention_mask=torch.ones(tokens.shape, dtype=torch.long),
                                    max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                                    pad_token_id=0)
        return out[:, tokens.shape[1]:].numpy()

    same_tokens = bool((ours() == theirs()).all())
    new_tokens = args.batch * args.new_tokens
    t_ours, t_hf = time_call(ours, repeats=args.repeats), time_call(theirs, repeats=args.repeats)
    print(f"greedy generation of {args.new_tokens} tokens, batch {args.batch}, prompt {args.prompt}")
    print(f"  lrt_jax : {new_tokens / t_ours:8.0f} tokens/s   HF torch generate: {new_tokens / t_hf:8.0f} tokens/s   "
          f"ratio {t_hf / t_ours:.2f}x (same tokens: {same_tokens})")
    return {"generate_tokens_per_s_lrt_jax": new_tokens / t_ours, "generate_tokens_per_s_hf_torch": new_tokens / t_hf,
            "generate_ratio_lrt_jax_over_hf": t_hf / t_ours, "generate_same_tokens": same_tokens}


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    left.barh(["vmapped sweep", "loop of jitted calls"],
              [result["sweep_seconds_vmapped"] * 1e3, result["sweep_seconds_loop"] * 1e3], color=["tab:blue", "tab:gray"])
    left.set_xlabel("ms for 16 alphas (lower is better)")
    left.set_title(f"alpha sweep ({result['sweep_speedup_vmapped_over_loop']:.2f}x)")
    right.barh(["lrt_jax generate", "HF torch generate"],
               [result["generate_tokens_per_s_lrt_jax"], result["generate_tokens_per_s_hf_torch"]],
               color=["tab:blue", "tab:gray"])
    right.set_xlabel("new tokens / s (higher is better)")
    right.set_title(f"greedy generation ({result['generate_ratio_lrt_jax_over_hf']:.2f}x)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--alphas", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    # One thread by default: on a shared, oversubscribed 2-core machine torch's OpenMP
    # barriers with 2 threads made HF generate ~10x slower than with 1 (8 vs ~200 tokens/s).
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (HF's fastest here)")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    hf_model = hf_llama(args)
    with tempfile.TemporaryDirectory() as tmp:
        hf_model.save_pretrained(tmp)
        lm = lrt_jax.load(tmp)
    tokens = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.prompt)).astype(np.int32)
    # The machine may be shared: record how busy it was, since that moves both sides' timings.
    result = {"config": vars(args), "load_average_1min_before": os.getloadavg()[0], **bench_sweep(lm, tokens, args), **bench_generation(lm, hf_model, tokens, args)}
    path = write_results("bench_sweep", result, args.out)
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
