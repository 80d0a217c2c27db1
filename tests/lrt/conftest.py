"""Random-weight models that share the organism tokenizer (fast stand-ins for trained organisms); hand-made results."""

import jax
import numpy as np
import pytest

import lrt_jax
from lrt_jax.organisms.corpus import CorpusConfig, generate_corpus
from lrt_jax.organisms.tokenizer import train_corpus_tokenizer

CORPUS = CorpusConfig(n_documents=200, fact_count=8)


@pytest.fixture(scope="session")
def organism_tokenizer():
    return train_corpus_tokenizer(CORPUS, generate_corpus(CORPUS))


@pytest.fixture(scope="session")
def random_pair(organism_tokenizer):
    """``(source, target)``: a 2-layer d=32 llama and a 3-layer d=48 mixtral with the organism tokenizer."""
    vocab = len(organism_tokenizer)
    source_config = lrt_jax.ModelConfig("llama", vocab, 32, 2, 4, 2, 8, 64, max_position_embeddings=128)
    target_config = lrt_jax.ModelConfig("mixtral", vocab, 48, 3, 4, 2, 12, 64, max_position_embeddings=128,
                                        n_experts=4, top_k=2, moe_d_ff=32)
    source = lrt_jax.LM(source_config, lrt_jax.init_params(source_config, jax.random.key(0)), organism_tokenizer,
                        "random-source")
    target = lrt_jax.LM(target_config, lrt_jax.init_params(target_config, jax.random.key(1)), organism_tokenizer,
                        "random-target")
    return source, target


@pytest.fixture
def hand_made_target():
    """Build a TargetSteering from hand-written ``{kind: [n_alphas, n_prompts]}`` propensities (and costs)."""
    from lrt_jax.evaluation import lrt_comparison
    from lrt_jax.lrt import VECTOR_KINDS, TargetSteering
    from lrt_jax.lrt.experiment import score_records
    from lrt_jax.results import ResultsTable

    def build(propensity, alphas, cost=None, cosine=0.7):
        cost = cost if cost is not None else {kind: np.zeros_like(np.asarray(propensity["native"]))
                                              for kind in VECTOR_KINDS}
        records = (score_records("sentiment", "m", "propensity", propensity, alphas)
                   + score_records("sentiment", "m", "kl_next_token", cost, alphas))
        scores = ResultsTable(tuple(records))
        return TargetSteering(
            model="m", site="layers.0.resid_post", scores=scores,
            comparison=lrt_comparison(scores, metric="propensity", compared=VECTOR_KINDS[1:]),
            cosine_with_native={"transferred_linear": cosine, "transferred_affine": cosine},
            generation_alpha=0.5, generated_positive_share={kind: 0.5 for kind in VECTOR_KINDS},
            generated_positive_share_unsteered=0.5)

    return build
