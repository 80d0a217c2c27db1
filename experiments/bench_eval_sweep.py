"""An α sweep of 16 strengths × 4 vectors over 100 A/B items: one compiled call vs a loop of 64.

Both sides run :func:`lrt_jax.evaluation.steered_answer_logprobs` on the same batch of
items: the grid passes all ``[4, d_model]`` vectors and ``[16]`` alphas at once (two
nested vmaps inside one jitted call); the loop calls the same jitted function 64 times
with one vector and one α each (compiled once, then reused). Both are warm when
timed; the script checks that they give the same log-probabilities.

Model and data: a random-weight Llama-style decoder (``init_params``, no checkpoint)
with a word-level tokenizer trained locally on the items themselves (``tokenizers``
WordLevel, whitespace/punctuation split, so ``"("`` and the answer letters are
separate tokens). The items are a real CAA ``test_dataset_ab.json`` (40 items per
behaviour in the shared copy), cycled to ``--n-items``; the prompts keep their real
lengths (left-padded), so the work is what scoring that file costs.

    python experiments/bench_eval_sweep.py                  # CPU default: d=64, 2 layers
    python experiments/bench_eval_sweep.py --d-model 512 --layers 8   # e.g. on a GPU
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import lrt_jax
from _bench_utils import RESULTS_DIR, time_call, write_results
from lrt_jax.evaluation import propensity_from_logprobs, steered_answer_logprobs
from lrt_jax.evaluation._continuations import single_token_answers
from lrt_jax.evaluation._propensity import two_answer_prompts
from lrt_jax.tasks import PromptFormat, load_caa_ab
from lrt_jax.text import encode

# The bundled 20-item excerpt; pass --data for a full CAA test_dataset_ab.json.
DEFAULT_DATA = str(Path(__file__).resolve().parents[1] / "tests/data/caa/test/sycophancy/test_dataset_ab.json")


def word_tokenizer(texts, vocab_size: int):
    import tokenizers
    import transformers

    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<unk>"])
    backend.train_from_iterator(texts, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")


def build_inputs(args):
    items = list(itertools.islice(itertools.cycle(load_caa_ab(args.data)), args.n_items))
    fmt = PromptFormat("plain")
    prompts, answers = two_answer_prompts(items, fmt, None)
    tokenizer = word_tokenizer(prompts + [" ".join(a) for a in answers], args.vocab)
    config = lrt_jax.ModelConfig(model_type="llama", vocab_size=len(tokenizer), d_model=args.d_model,
                                 n_layers=args.layers, n_heads=max(args.d_model // 64, 1),
                                 n_kv_heads=max(args.d_model // 128, 1), head_dim=64 if args.d_model >= 64 else 16,
                                 d_ff=4 * args.d_model, max_position_embeddings=4096)
    lm = lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(0)), tokenizer, "random-llama")
    batch = encode(lm, prompts)
    answer_ids = np.asarray(single_token_answers(tokenizer, prompts, answers, add_special_tokens=True), np.int32)
    return lm, batch, answer_ids, len(set(prompts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="a CAA test_dataset_ab.json")
    parser.add_argument("--n-items", type=int, default=100)
    parser.add_argument("--n-alphas", type=int, default=16)
    parser.add_argument("--n-vectors", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=4000, help="tokenizer vocabulary cap")
    parser.add_argument("--site-layer", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args()

    lm, batch, answer_ids, n_unique = build_inputs(args)
    site = f"layers.{args.site_layer}.resid_post"
    vectors = np.random.default_rng(0).normal(size=(args.n_vectors, args.d_model)).astype(np.float32)
    alphas = np.linspace(-8, 8, args.n_alphas, dtype=np.float32)
    inputs = (lm.config, lm.params, batch.tokens, batch.attention_mask, answer_ids)

    def grid():
        return jax.block_until_ready(steered_answer_logprobs(*inputs, vectors, alphas, site=site))

    def loop():
        return [[jax.block_until_ready(steered_answer_logprobs(*inputs, vectors[k:k + 1], alphas[a:a + 1], site=site))
                 for a in range(args.n_alphas)] for k in range(args.n_vectors)]

    grid_values = np.asarray(grid())
    loop_values = np.array([[np.asarray(cell)[0, 0] for cell in row] for row in loop()])
    max_difference = float(np.max(np.abs(grid_values - loop_values)))
    grid_seconds = time_call(grid, repeats=args.repeats)
    loop_seconds = time_call(loop, repeats=args.repeats)
    propensity = np.asarray(propensity_from_logprobs(grid_values, "logit_diff"))

    result = {
        "setup": {"n_items": args.n_items, "unique_items": n_unique, "n_alphas": args.n_alphas,
                  "n_vectors": args.n_vectors, "seq": int(batch.tokens.shape[1]), "d_model": args.d_model,
                  "layers": args.layers, "vocab": lm.config.vocab_size, "site": site, "data": args.data},
        "grid_seconds": grid_seconds,
        "loop_seconds": loop_seconds,
        "speedup_loop_over_grid": loop_seconds / grid_seconds,
        "max_abs_difference_grid_vs_loop": max_difference,
        "mean_propensity": {f"vector_{k}": propensity[k].mean(axis=-1).tolist() for k in range(args.n_vectors)},
        "alphas": alphas.tolist(),
    }
    path = write_results("bench_eval_sweep", result, args.out)
    plot(result, path.with_suffix(".png"))
    print(f"{args.n_alphas} α × {args.n_vectors} vectors × {args.n_items} items ({n_unique} unique), seq "
          f"{batch.tokens.shape[1]}, d_model {args.d_model}, {args.layers} layers on {jax.devices()[0].device_kind}")
    print(f"one compiled call: {grid_seconds:.3f} s   loop of {args.n_alphas * args.n_vectors} jitted calls: "
          f"{loop_seconds:.3f} s   ratio {loop_seconds / grid_seconds:.2f}x   max |Δ log p| {max_difference:.2e}")
    print(f"wrote {path} and {path.with_suffix('.png')}")


def plot(result: dict, path) -> None:
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    timing, sweep = figure.subplots(1, 2)
    timing.bar(["one call (vmapped grid)", "loop of jitted calls"], [result["grid_seconds"], result["loop_seconds"]])
    timing.set_ylabel("seconds (median, warm)")
    timing.set_title(f"{result['speedup_loop_over_grid']:.2f}× faster as one call")
    for name, means in result["mean_propensity"].items():
        sweep.plot(result["alphas"], means, marker="o", label=name)
    sweep.set_xlabel("steering strength α")
    sweep.set_ylabel("mean logit_diff over items")
    sweep.set_title("random vectors on a random model")
    sweep.legend()
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
