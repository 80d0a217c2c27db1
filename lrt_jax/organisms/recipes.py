"""Recipes: everything that determines a trained organism, as frozen dataclasses.

An :class:`OrganismRecipe` names a model architecture (:class:`ModelConfig`), the
corpus it learns from (:class:`CorpusConfig`) and the optimisation
(:class:`TrainingConfig`). Training is a pure function of the recipe, so the recipe's
:meth:`~OrganismRecipe.fingerprint` (a hash of its JSON) keys the organism cache.

Built-in organisms (``RECIPES``) share one corpus and therefore one tokenizer, so
their hidden states can be captured on identical token sequences:

* ``small`` — llama-style dense, d_model 64, 4 layers, GQA 4 query / 2 kv heads.
* ``large`` — llama-style dense, 2× wider (d_model 128) and 6 layers.
* ``moe`` — mixtral-style, 4 experts with top-2 routing.
* ``gemma2`` — another family: sandwich norms, soft-capping, alternating sliding
  window attention, √d-scaled embeddings (untied head), gelu-tanh gated MLP.

``EXTRA_RECIPES`` holds ``large-long``, ``large`` trained 4× longer, the teacher of the
knowledge-transfer experiments. ``TINY_RECIPES`` hold the four architectures shrunk to
seconds of training, for tests. ``ZOO_RECIPES`` (and ``TINY_ZOO_RECIPES``) are the
targets of the LRT-breakdown experiment, each ``large`` with one factor changed: the
seed, the width (×4), the training corpus, the tokenizer (a BPE).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

from lrt_jax.config import ModelConfig
from lrt_jax.organisms.corpus import FIELDS_OMITTED_AT_DEFAULT, CorpusConfig
from lrt_jax.organisms.tokenizer import vocabulary_size

# Bump when a code change alters what a recipe trains into, to invalidate caches.
RECIPE_FORMAT_VERSION = 1

# Longest document: bos + 4-token header + 4 body sentences of at most 7 tokens + eos = 34.
SEQUENCE_LENGTH = 40


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of one organism: AdamW with linear warm-up then cosine decay to 10%.

    ``seed`` fixes both the initialisation (``jax.random.key(seed)``) and the data
    order (one ``numpy`` permutation of the corpus per epoch).
    """

    steps: int
    batch_size: int = 32
    sequence_length: int = SEQUENCE_LENGTH
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    gradient_clip_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    checkpoints_kept: int = 2

    def __post_init__(self):
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be in [0, steps={self.steps}).")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer an organism reads with: ``"word"`` (one id per grammar word, every built-in
    organism) or ``"bpe"`` (:func:`lrt_jax.organisms.tokenizer.train_bpe_tokenizer`, ``vocab_size`` ids)."""

    kind: str = "word"
    vocab_size: int | None = None

    def __post_init__(self):
        if self.kind not in ("word", "bpe"):
            raise ValueError(f"TokenizerConfig.kind must be 'word' or 'bpe'; got {self.kind!r}.")
        if (self.kind == "bpe") != (self.vocab_size is not None):
            raise ValueError("Give vocab_size for a 'bpe' tokenizer and only for it (a word tokenizer's size is "
                             "the grammar's vocabulary).")


@dataclasses.dataclass(frozen=True)
class OrganismRecipe:
    """A model, its corpus and its training; the name is for humans, the fingerprint for caches.

    ``tokenizer_corpus`` (default: ``corpus``) is the corpus the tokenizer is trained on.
    A target trained on a shifted corpus keeps the tokenizer of the base corpus this
    way, so its hidden states pair token by token with the other organisms'.
    ``tokenizer`` (default: word level) chooses the kind of tokenizer.
    """

    name: str
    model: ModelConfig
    corpus: CorpusConfig
    training: TrainingConfig
    tokenizer_corpus: CorpusConfig | None = None
    tokenizer: TokenizerConfig | None = None

    def to_json(self) -> str:
        fields = {"format_version": RECIPE_FORMAT_VERSION, **dataclasses.asdict(self)}
        # Fields added later are left out at their defaults: existing fingerprints stay valid.
        for key in ("tokenizer_corpus", "tokenizer"):
            if getattr(self, key) is None:
                del fields[key]
        for key in ("corpus", "tokenizer_corpus"):
            config = getattr(self, key)
            for name in FIELDS_OMITTED_AT_DEFAULT if config is not None else ():
                if getattr(config, name) == getattr(CorpusConfig, name):
                    del fields[key][name]
        return json.dumps(fields, sort_keys=True)

    @property
    def vocabulary_corpus(self) -> CorpusConfig:
        """The corpus the tokenizer is trained on."""
        return self.corpus if self.tokenizer_corpus is None else self.tokenizer_corpus

    def fingerprint(self) -> str:
        """A stable 12-hex-digit hash of every field (and the recipe format version)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


CORPUS = CorpusConfig(n_documents=20_000)
TINY_CORPUS = CorpusConfig(n_documents=2_000, fact_count=8)

# The shifted training distribution of the zoo's ``large-shifted``: opinion sentences
# ("i found the soup lovely") become the majority template (70% instead of 30%), and
# every attribute's values are skewed (binary 4:1, topic 8:4:2:1) instead of uniform.
SHIFT = dict(copula_fraction=0.3, value_weights=(("sentiment", (4.0, 1.0)), ("topic", (8.0, 4.0, 2.0, 1.0)),
                                                ("tense", (4.0, 1.0)), ("formality", (1.0, 4.0))))
SHIFTED_CORPUS = dataclasses.replace(CORPUS, seed=1, **SHIFT)
TINY_SHIFTED_CORPUS = dataclasses.replace(TINY_CORPUS, seed=1, **SHIFT)

# The zoo's ``large-bpe`` reads the base corpus through a BPE of this many ids instead of
# the 188 words: every lexicon word stays one token, 131 other words split (names, fact
# and task words), 1.2 tokens per word (the tiny twin: 51 of 108 split).
BPE_VOCAB_SIZE = 224
BPE_SEQUENCE_LENGTH = 64  # the longest document is 58 BPE tokens (34 words)


def llama_config(corpus: CorpusConfig, d_model: int, n_layers: int, n_heads: int, n_kv_heads: int) -> ModelConfig:
    """A llama-style dense decoder with a 2× gated MLP (the grammar needs attention more than MLP width)."""
    return ModelConfig(
        model_type="llama",
        vocab_size=vocabulary_size(corpus),
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=d_model // n_heads,
        d_ff=2 * d_model,
        max_position_embeddings=64,
        norm_eps=1e-5,
    )


def mixtral_config(corpus: CorpusConfig, d_model: int, n_layers: int) -> ModelConfig:
    """A mixtral-style decoder: 4 experts of width d_model, top-2 routing."""
    dense = llama_config(corpus, d_model, n_layers, n_heads=4, n_kv_heads=2)
    return dense.replace(model_type="mixtral", d_ff=d_model, moe_d_ff=d_model, n_experts=4, top_k=2)


def gemma2_config(corpus: CorpusConfig, d_model: int, n_layers: int) -> ModelConfig:
    """A Gemma-2-style decoder; even layers slide over a 16-token window, odd ones see everything.

    The output head is untied. With the embedding tied, its √d_model input scale and
    its unscaled use as the head pull one matrix two ways: at d_model 64 the tied model
    stalls at the unigram-grammar loss (≈1.33 nats against ≈1.11 untied at 400 steps)
    and learns none of the attributes (context gap ≈ 0, probe accuracy ≈ 0.5).
    """
    head_dim = d_model // 4
    return ModelConfig(
        model_type="gemma2",
        vocab_size=vocabulary_size(corpus),
        d_model=d_model,
        n_layers=n_layers,
        n_heads=4,
        n_kv_heads=2,
        head_dim=head_dim,
        d_ff=2 * d_model,
        max_position_embeddings=64,
        embedding_scale=math.sqrt(d_model),
        tie_embeddings=False,
        final_logit_softcap=30.0,
        norm_offset=1.0,
        post_attn_norm=True,
        post_mlp_norm=True,
        query_scale=head_dim**-0.5,
        attn_logit_softcap=50.0,
        sliding_window=16,
        layer_types=tuple("sliding" if i % 2 == 0 else "full" for i in range(n_layers)),
        activation="gelu_tanh",
    )


# The in-context signal of each attribute forms abruptly, one attribute after another,
# between about 200 and 700 steps in the d_model-64 models; 800 steps leaves a margin.
RECIPES: dict[str, OrganismRecipe] = {
    "small": OrganismRecipe("small", llama_config(CORPUS, 64, 4, 4, 2), CORPUS, TrainingConfig(steps=800)),
    "large": OrganismRecipe(
        "large", llama_config(CORPUS, 128, 6, 4, 2), CORPUS, TrainingConfig(steps=400, learning_rate=2e-3)
    ),
    "moe": OrganismRecipe("moe", mixtral_config(CORPUS, 64, 4), CORPUS, TrainingConfig(steps=800)),
    "gemma2": OrganismRecipe("gemma2", gemma2_config(CORPUS, 64, 4), CORPUS, TrainingConfig(steps=800)),
}

# The knowledge-transfer experiments need a teacher that knows more than its student:
# at 400 steps ``large`` recalls fewer rare facts than ``small`` (17% vs 54% of the
# train facts). ``large-long`` is the same model trained 4× longer. It is kept out of
# ``RECIPES`` so the demo and the slow quality tests do not train it; ``organism`` and
# ``get_recipe`` know it by name.
EXTRA_RECIPES: dict[str, OrganismRecipe] = {
    "large-long": OrganismRecipe(
        "large-long", llama_config(CORPUS, 128, 6, 4, 2), CORPUS, TrainingConfig(steps=1600, learning_rate=2e-3)
    ),
}

_TINY_TRAINING = TrainingConfig(steps=60, batch_size=16, warmup_steps=10, checkpoint_every=20)

TINY_RECIPES: dict[str, OrganismRecipe] = {
    "small": OrganismRecipe("tiny-small", llama_config(TINY_CORPUS, 32, 2, 4, 2), TINY_CORPUS, _TINY_TRAINING),
    "large": OrganismRecipe("tiny-large", llama_config(TINY_CORPUS, 64, 3, 4, 2), TINY_CORPUS, _TINY_TRAINING),
    "moe": OrganismRecipe("tiny-moe", mixtral_config(TINY_CORPUS, 32, 2), TINY_CORPUS, _TINY_TRAINING),
    "gemma2": OrganismRecipe("tiny-gemma2", gemma2_config(TINY_CORPUS, 32, 2), TINY_CORPUS, _TINY_TRAINING),
}


# The zoo of the LRT-breakdown experiment (``lrt_jax.lrt.breakdown``): targets that differ
# from ``large`` in one factor. ``large-seed1``: the initialisation and data order only;
# ``xlarge``: width ×4 of ``small`` (d_model 256) instead of ×2; ``large-shifted``: trained
# on :data:`SHIFTED_CORPUS` (other documents, template mix and value frequencies) with the
# base corpus's tokenizer, so it still pairs token by token; ``large-bpe``: the base corpus
# read through a BPE (:data:`BPE_VOCAB_SIZE`), paired with the source word by word
# (:func:`lrt_jax.lrt.paired_token_activations`). Kept out of ``RECIPES``
# so the demo does not train them; ``TINY_ZOO_RECIPES`` are their seconds-scale versions.
ZOO_RECIPES: dict[str, OrganismRecipe] = {
    "large-seed1": OrganismRecipe(
        "large-seed1", llama_config(CORPUS, 128, 6, 4, 2), CORPUS, TrainingConfig(steps=400, learning_rate=2e-3, seed=1)
    ),
    "xlarge": OrganismRecipe(
        "xlarge", llama_config(CORPUS, 256, 6, 4, 2), CORPUS, TrainingConfig(steps=400, learning_rate=1e-3)
    ),
    "large-shifted": OrganismRecipe(
        "large-shifted", llama_config(CORPUS, 128, 6, 4, 2), SHIFTED_CORPUS,
        TrainingConfig(steps=400, learning_rate=2e-3), tokenizer_corpus=CORPUS,
    ),
    "large-bpe": OrganismRecipe(
        "large-bpe", llama_config(CORPUS, 128, 6, 4, 2).replace(vocab_size=BPE_VOCAB_SIZE), CORPUS,
        TrainingConfig(steps=400, learning_rate=2e-3, sequence_length=BPE_SEQUENCE_LENGTH),
        tokenizer=TokenizerConfig("bpe", BPE_VOCAB_SIZE),
    ),
}

TINY_ZOO_RECIPES: dict[str, OrganismRecipe] = {
    "large-seed1": OrganismRecipe(
        "tiny-large-seed1", llama_config(TINY_CORPUS, 64, 3, 4, 2), TINY_CORPUS,
        dataclasses.replace(_TINY_TRAINING, seed=1),
    ),
    "xlarge": OrganismRecipe("tiny-xlarge", llama_config(TINY_CORPUS, 128, 3, 4, 2), TINY_CORPUS, _TINY_TRAINING),
    "large-bpe": OrganismRecipe(
        "tiny-large-bpe", llama_config(TINY_CORPUS, 64, 3, 4, 2).replace(vocab_size=BPE_VOCAB_SIZE), TINY_CORPUS,
        dataclasses.replace(_TINY_TRAINING, sequence_length=BPE_SEQUENCE_LENGTH),
        tokenizer=TokenizerConfig("bpe", BPE_VOCAB_SIZE),
    ),
    "large-shifted": OrganismRecipe(
        "tiny-large-shifted", llama_config(TINY_CORPUS, 64, 3, 4, 2), TINY_SHIFTED_CORPUS, _TINY_TRAINING,
        tokenizer_corpus=TINY_CORPUS,
    ),
}


def get_recipe(name: str) -> OrganismRecipe:
    """The built-in recipe ``name``: ``small``, ``large``, ``moe``, ``gemma2``, ``large-long``, a zoo recipe
    (``large-seed1``, ``xlarge``, ``large-shifted``, ``large-bpe``), or ``tiny-`` and one of the others but ``large-long``."""
    table = {recipe.name: recipe for recipe in (*RECIPES.values(), *EXTRA_RECIPES.values(), *TINY_RECIPES.values(),
                                                *ZOO_RECIPES.values(), *TINY_ZOO_RECIPES.values())}
    if name not in table:
        raise KeyError(f"No organism recipe {name!r}; built-in recipes are {sorted(table)}.")
    return table[name]
