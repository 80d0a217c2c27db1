"""A word-level tokenizer trained locally on the organism corpus, saved in HF format.

Word level keeps every lexicon word one token, so the probability of an answer word
is exactly one next-token probability (no multi-token scoring). Text is lower-cased
and split on whitespace and punctuation. Encoding prepends ``<bos>`` (training
appends ``<eos>`` itself), so ``tokenizer(prompt)`` gives the ids a probe needs.

The trainer sees the sampled corpus plus the grammar's whole vocabulary, so ids are
ordered by corpus frequency but no word the grammar can emit is ever ``<unk>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from lrt_jax.organisms import corpus

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def train_word_tokenizer(texts: Sequence[str], vocabulary: Sequence[str]) -> transformers.PreTrainedTokenizerFast:
    """Train a WordLevel tokenizer on ``texts`` and ``vocabulary``; special tokens get ids 0–3."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1, show_progress=False)
    tokenizer.train_from_iterator([*texts, " ".join(vocabulary)], trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )


def train_corpus_tokenizer(config: corpus.CorpusConfig, documents: Sequence[corpus.Document]):
    """The organism tokenizer for ``documents`` drawn from ``config``."""
    return train_word_tokenizer([document.text for document in documents], corpus.grammar_vocabulary(config))


def vocabulary_size(config: corpus.CorpusConfig) -> int:
    """Number of ids the tokenizer of any corpus drawn from ``config`` has (known before sampling)."""
    return len(SPECIAL_TOKENS) + len(corpus.grammar_vocabulary(config))
