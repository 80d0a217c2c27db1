"""Train an organism from its recipe: deterministic, resumable, saved as an HF checkpoint.

Data: every document becomes one row ``<bos> words <eos> <pad>…`` of
``sequence_length`` tokens ``[n_documents, sequence_length]``. The sample stream is
the concatenation of one seeded permutation of the rows per epoch, and step ``s``
reads samples ``s·batch … (s+1)·batch − 1`` of it — so the data position of a run is
its step, and a resumed run reads exactly the batches an uninterrupted one would.

Loss: mean next-token cross-entropy over real target tokens (padding targets are
masked). Rows are right-padded and attention is causal, so real tokens never see
padding and the decoder needs no ``kv_mask``.

Checkpoints: orbax keeps the last few ``{params, opt_state}`` states by step in
``<out_dir>.checkpoints``; a rerun restores the latest and continues. The finished
model is written to a temporary directory and renamed to ``out_dir``, so an
interrupted run never leaves a half-written model where a cache would find it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import transformers
from tqdm.auto import tqdm

from lrt_jax import loading
from lrt_jax.lm import LM
from lrt_jax.model import Decoder, init_params
from lrt_jax.organisms.corpus import generate_corpus, grammar_vocabulary
from lrt_jax.organisms.recipes import OrganismRecipe, TokenizerConfig, TrainingConfig
from lrt_jax.organisms.tokenizer import train_bpe_tokenizer, train_corpus_tokenizer
from lrt_jax._optax import optimizer_update

RECIPE_FILE = "organism_recipe.json"

StepCallback = Callable[[int, float], None]


def encode_documents(tokenizer, texts: list[str], sequence_length: int) -> np.ndarray:
    """Rows ``[len(texts), sequence_length]`` int32 of ``<bos> text <eos>`` right-padded with ``<pad>``."""
    encodings = tokenizer.backend_tokenizer.encode_batch(texts)
    rows = np.full((len(texts), sequence_length), tokenizer.pad_token_id, dtype=np.int32)
    for row, encoding in zip(rows, encodings):
        ids = encoding.ids + [tokenizer.eos_token_id]
        if len(ids) > sequence_length:
            raise ValueError(
                f"A document has {len(ids)} tokens but sequence_length is {sequence_length}; raise "
                "TrainingConfig.sequence_length."
            )
        row[: len(ids)] = ids
    return rows


def batch_indices(step: int, batch_size: int, n_rows: int, seed: int) -> np.ndarray:
    """Row indices ``[batch_size]`` of step ``step`` in the seeded epoch-by-epoch sample stream."""
    samples = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = np.divmod(samples, n_rows)
    indices = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        permutation = np.random.default_rng([seed, int(epoch)]).permutation(n_rows)
        indices[epochs == epoch] = permutation[offsets[epochs == epoch]]
    return indices


def make_optimizer(training: TrainingConfig) -> optax.GradientTransformation:
    """Clipped AdamW; linear warm-up to the peak rate, cosine decay to a tenth of it.

    Weight decay skips vectors (norm scales, biases): shrinking them towards zero is
    not regularisation, it changes the function.
    """
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=training.learning_rate,
        warmup_steps=training.warmup_steps,
        decay_steps=training.steps,
        end_value=training.learning_rate / 10,
    )
    return optax.chain(
        optax.clip_by_global_norm(training.gradient_clip_norm),
        optax.adamw(
            schedule,
            b2=0.98,
            weight_decay=training.weight_decay,
            mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params),
        ),
    )


def make_train_step(recipe: OrganismRecipe, optimizer: optax.GradientTransformation, pad_id: int):
    """The jitted update ``(params, opt_state, rows [batch, seq]) -> (params, opt_state, loss)``."""
    decoder = Decoder(recipe.model)

    def loss_fn(params, rows):
        inputs, targets = rows[:, :-1], rows[:, 1:]
        logits, _ = decoder.apply({"params": params}, inputs)
        real = (targets != pad_id).astype(jnp.float32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return (nll * real).sum() / real.sum()

    @jax.jit
    def train_step(params, opt_state, rows):
        loss, grads = jax.value_and_grad(loss_fn)(params, rows)
        updates, opt_state = optimizer_update(optimizer, grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def _checkpoint_manager(directory: Path, training: TrainingConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=training.checkpoints_kept, create=True)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def recipe_tokenizer(recipe: OrganismRecipe, documents=None) -> transformers.PreTrainedTokenizerFast:
    """The tokenizer ``recipe`` trains with: its kind (word or BPE) fitted to its tokenizer corpus.

    ``documents`` may pass ``generate_corpus(recipe.corpus)`` when it is already drawn.
    """
    vocabulary_corpus = recipe.vocabulary_corpus
    if documents is None or vocabulary_corpus != recipe.corpus:
        documents = generate_corpus(vocabulary_corpus)
    kind = recipe.tokenizer or TokenizerConfig()
    if kind.kind == "bpe":
        return train_bpe_tokenizer([document.text for document in documents], grammar_vocabulary(vocabulary_corpus),
                                   kind.vocab_size)
    return train_corpus_tokenizer(vocabulary_corpus, documents)


def train_organism(
    recipe: OrganismRecipe,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    callback: StepCallback | None = None,
) -> LM:
    """Train ``recipe`` (resuming from its checkpoints if any) and save it to ``out_dir``.

    Args:
      recipe: what to train.
      out_dir: the HF checkpoint directory to create (``config.json``,
        ``model.safetensors``, tokenizer files and ``organism_recipe.json``).
      progress: show a tqdm bar with the running loss.
      callback: called as ``callback(step, loss)`` after every step (``step`` counts
        from 1); an exception it raises interrupts training, and the next call resumes
        from the latest checkpoint.

    Returns:
      The trained :class:`LM`, loaded back from ``out_dir``.
    """
    out_dir = Path(out_dir)
    training = recipe.training
    documents = generate_corpus(recipe.corpus)
    tokenizer = recipe_tokenizer(recipe, documents)
    if len(tokenizer) != recipe.model.vocab_size:
        raise ValueError(f"Recipe {recipe.name!r} has vocab_size {recipe.model.vocab_size}, tokenizer {len(tokenizer)}.")
    rows = encode_documents(tokenizer, [document.text for document in documents], training.sequence_length)

    optimizer = make_optimizer(training)
    # One compiled initialisation instead of hundreds of eagerly compiled small ops.
    params = jax.jit(init_params, static_argnums=0)(recipe.model, jax.random.key(training.seed))
    state = {"params": params, "opt_state": optimizer.init(params)}
    train_step = make_train_step(recipe, optimizer, tokenizer.pad_token_id)

    checkpoint_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    with _checkpoint_manager(checkpoint_dir, training) as manager:
        start = manager.latest_step() or 0
        if start:
            state = manager.restore(start, args=ocp.args.StandardRestore(state))
        params, opt_state = state["params"], state["opt_state"]
        bar = tqdm(range(start, training.steps), initial=start, total=training.steps, desc=recipe.name, disable=not progress)
        for step in bar:
            batch = rows[batch_indices(step, training.batch_size, len(rows), training.seed)]
            params, opt_state, loss = train_step(params, opt_state, batch)
            done = step + 1
            if done % training.checkpoint_every == 0 or done == training.steps:
                manager.save(done, args=ocp.args.StandardSave({"params": params, "opt_state": opt_state}))
            if progress and done % 10 == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}")
            if callback is not None:
                callback(done, float(loss))
        manager.wait_until_finished()

    lm = LM(recipe.model, params, tokenizer, recipe.name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        loading.save(lm, staging)
        (staging / RECIPE_FILE).write_text(recipe.to_json())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return loading.load(out_dir)._replace(name=recipe.name)
