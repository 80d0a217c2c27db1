"""Training: the loss falls, the seed fixes every bit, interruption resumes, HF parity holds."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch
import transformers

import lrt_jax
from lrt_jax.organisms import cache, recipes, train

TINY = recipes.TINY_RECIPES["small"]


def assert_trees_bitwise_equal(left, right):
    assert jax.tree.structure(left) == jax.tree.structure(right)
    for a, b in zip(jax.tree.leaves(left), jax.tree.leaves(right)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny small organism trained without interruption, with its per-step losses."""
    losses = []
    out_dir = tmp_path_factory.mktemp("organisms") / "tiny-small"
    lm = train.train_organism(TINY, out_dir, progress=False, callback=lambda step, loss: losses.append(loss))
    return lm, out_dir, losses


def test_loss_decreases_and_the_checkpoint_is_complete(trained):
    lm, out_dir, losses = trained
    assert len(losses) == TINY.training.steps
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
    names = {path.name for path in out_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", train.RECIPE_FILE} <= names
    assert not out_dir.with_name(out_dir.name + ".checkpoints").exists()
    assert lm.name == TINY.name and lm.tokenizer is not None


def test_same_seed_gives_bitwise_identical_params_through_the_cache(trained, tmp_path):
    lm, _, _ = trained
    again = cache.organism(TINY, cache_dir=tmp_path, progress=False)
    assert_trees_bitwise_equal(lm.params, again.params)
    assert cache.organism_path(TINY, tmp_path).is_dir()
    reloaded = cache.organism(TINY, cache_dir=tmp_path, progress=False)  # a cache hit: no training
    assert_trees_bitwise_equal(lm.params, reloaded.params)


def test_interrupted_training_resumes_from_the_last_checkpoint(trained, tmp_path):
    lm, _, _ = trained
    out_dir = tmp_path / "tiny-small"
    every = TINY.training.checkpoint_every

    def interrupt(step, loss):
        if step == every + every // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_organism(TINY, out_dir, progress=False, callback=interrupt)
    assert not out_dir.exists()
    resumed_steps = []
    resumed = train.train_organism(TINY, out_dir, progress=False, callback=lambda step, loss: resumed_steps.append(step))
    assert resumed_steps[0] == every + 1
    assert_trees_bitwise_equal(lm.params, resumed.params)


def test_recipe_fingerprint_changes_with_any_field():
    longer = dataclasses.replace(TINY, training=dataclasses.replace(TINY.training, steps=61))
    assert TINY.fingerprint() == recipes.get_recipe(TINY.name).fingerprint()
    assert longer.fingerprint() != TINY.fingerprint()


def test_large_long_is_the_large_model_trained_longer():
    """The knowledge-transfer teacher: same architecture, corpus and tokenizer as ``large``, 4× the steps."""
    long, large = recipes.get_recipe("large-long"), recipes.RECIPES["large"]
    assert long.model == large.model and long.corpus == large.corpus
    assert long.training == dataclasses.replace(large.training, steps=4 * large.training.steps)
    assert long.fingerprint() != large.fingerprint()
    assert "large-long" not in recipes.RECIPES  # the demo and the slow quality tests do not train it


def test_every_built_in_architecture_has_a_tiny_twin_for_the_parity_test():
    """The parity test below runs the tiny recipes, so they must cover each built-in family's flags."""
    assert set(recipes.TINY_RECIPES) == set(recipes.RECIPES)
    for name, recipe in recipes.RECIPES.items():
        tiny = recipes.TINY_RECIPES[name].model
        for flag in ("model_type", "tie_embeddings", "post_attn_norm", "final_logit_softcap", "activation", "n_experts"):
            assert getattr(tiny, flag) == getattr(recipe.model, flag), (name, flag)
        assert (tiny.layer_types is None) == (recipe.model.layer_types is None), name


@pytest.mark.parametrize("architecture", sorted(recipes.TINY_RECIPES))
def test_saved_organism_matches_transformers_pytorch(architecture, trained, tmp_path):
    recipe = recipes.TINY_RECIPES[architecture]
    if architecture == "small":
        lm, out_dir, _ = trained
    else:
        short = dataclasses.replace(recipe.training, steps=10, warmup_steps=2, checkpoint_every=10)
        recipe = dataclasses.replace(recipe, training=short)
        out_dir = tmp_path / recipe.name
        lm = train.train_organism(recipe, out_dir, progress=False)
    texts = ["note from mira . moreover the soup was lovely . indeed the cake", "sum : 3 plus 4 : 4 5 6 7 so"]
    batch = lm.tokenizer(texts, padding=True, return_tensors="np")
    ours = np.asarray(lrt_jax.forward(lm, batch["input_ids"], attention_mask=batch["attention_mask"]))
    torch_model = transformers.AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        theirs = torch_model(
            input_ids=torch.as_tensor(batch["input_ids"]), attention_mask=torch.as_tensor(batch["attention_mask"])
        ).logits.numpy()
    real = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4, rtol=1e-4)


def test_built_in_fingerprints_survive_fields_added_at_their_defaults():
    """Fields added to the recipe later (``tokenizer_corpus``, the corpus shift) are left out of the JSON at
    their defaults, so organisms cached before them are still found. These are the fingerprints of the
    organisms trained before the fields existed."""
    assert recipes.get_recipe("small").fingerprint() == "ec5f74ee5246"
    assert recipes.get_recipe("large").fingerprint() == "2b315bb318a2"
    assert "tokenizer_corpus" not in recipes.get_recipe("large").to_json()
    shifted = recipes.get_recipe("large-shifted")
    assert shifted.fingerprint() != recipes.get_recipe("large").fingerprint()
    assert '"copula_fraction": 0.3' in shifted.to_json()


def test_shifted_organism_is_trained_on_its_corpus_with_the_base_tokenizer(tmp_path):
    """``large-shifted`` learns from other documents but tokenizes exactly like the base organisms."""
    from lrt_jax.organisms import corpus, tokenizer

    recipe = recipes.TINY_ZOO_RECIPES["large-shifted"]
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, steps=12, warmup_steps=2))
    assert recipe.corpus != recipe.tokenizer_corpus == recipes.TINY_CORPUS
    lm = train.train_organism(recipe, tmp_path / "shifted", progress=False)
    base = tokenizer.train_corpus_tokenizer(recipes.TINY_CORPUS, corpus.generate_corpus(recipes.TINY_CORPUS))
    own = tokenizer.train_corpus_tokenizer(recipe.corpus, corpus.generate_corpus(recipe.corpus))
    assert lm.tokenizer.get_vocab() == base.get_vocab()
    assert own.get_vocab() != base.get_vocab()  # so the choice of tokenizer corpus matters
