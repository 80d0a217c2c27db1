"""Model organisms: small LMs trained on a synthetic corpus whose latent attributes are known.

There is no model hub here, so the project trains its own models. The corpus
(:mod:`~lrt_jax.organisms.corpus`) is a seeded grammar of short documents with four
latent attributes — sentiment, topic, tense, formality — each with its own lexicon,
plus fact-recall and arithmetic tasks with checkable answers. The recipes
(:mod:`~lrt_jax.organisms.recipes`) train a small and a large llama-style model, a
mixtral-style MoE and a Gemma-2-style model on it, plus ``large-long`` (the large
model trained 4× longer, the teacher of the knowledge-transfer experiments);
:func:`organism` returns one from the cache, training it on first use (about a
minute on two CPU cores, six for ``large-long``).

Example::

    from lrt_jax import organisms
    small = organisms.organism("small")
    probe = organisms.make_attribute_probe("sentiment")        # prompts + answer words
    pairs = organisms.make_contrastive_pairs("sentiment")      # for difference of means
"""

from lrt_jax.organisms.cache import organism, organism_cache_root, organism_path
from lrt_jax.organisms.corpus import CorpusConfig, Document, generate_corpus
from lrt_jax.organisms.lexicons import LEXICONS, PROBED_PART, attribute_values, lexicon_words
from lrt_jax.organisms.probes import (
    AttributeProbe,
    ContrastivePairs,
    answer_token_ids,
    attribute_propensity,
    make_attribute_probe,
    make_contrastive_pairs,
)
from lrt_jax.organisms.recipes import (
    EXTRA_RECIPES,
    RECIPES,
    TINY_RECIPES,
    TINY_ZOO_RECIPES,
    ZOO_RECIPES,
    OrganismRecipe,
    TrainingConfig,
    get_recipe,
)
from lrt_jax.organisms.tasks import (
    Fact,
    TaskItem,
    arithmetic_items,
    extract_final_answer,
    fact_recall_items,
    make_fact_table,
    score_completions,
)
from lrt_jax.organisms.train import train_organism

__all__ = [
    "answer_token_ids",
    "arithmetic_items",
    "attribute_propensity",
    "attribute_values",
    "AttributeProbe",
    "ContrastivePairs",
    "CorpusConfig",
    "Document",
    "EXTRA_RECIPES",
    "extract_final_answer",
    "Fact",
    "fact_recall_items",
    "generate_corpus",
    "get_recipe",
    "lexicon_words",
    "LEXICONS",
    "make_attribute_probe",
    "make_contrastive_pairs",
    "make_fact_table",
    "organism",
    "organism_cache_root",
    "organism_path",
    "OrganismRecipe",
    "PROBED_PART",
    "RECIPES",
    "score_completions",
    "TaskItem",
    "TINY_RECIPES",
    "TINY_ZOO_RECIPES",
    "train_organism",
    "TrainingConfig",
    "ZOO_RECIPES",
]
