"""Tokenizers trained locally on the organism corpus, saved in HF format.

Every built-in organism uses the word-level tokenizer; the LRT zoo's ``large-bpe``
uses a byte-pair encoding of the same corpus (:func:`train_bpe_tokenizer`), so that
a pair of organisms can differ in their tokenizer alone.

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
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from lrt_jax.organisms import corpus, lexicons

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def _as_hf(tokenizer: Tokenizer) -> transformers.PreTrainedTokenizerFast:
    """A trained ``tokenizers.Tokenizer`` that prepends ``<bos>``, wrapped as an HF fast tokenizer."""
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


def train_word_tokenizer(texts: Sequence[str], vocabulary: Sequence[str]) -> transformers.PreTrainedTokenizerFast:
    """Train a WordLevel tokenizer on ``texts`` and ``vocabulary``; special tokens get ids 0–3."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1, show_progress=False)
    tokenizer.train_from_iterator([*texts, " ".join(vocabulary)], trainer=trainer)
    return _as_hf(tokenizer)


def train_bpe_tokenizer(texts: Sequence[str], vocabulary: Sequence[str],
                        vocab_size: int) -> transformers.PreTrainedTokenizerFast:
    """A SentencePiece-style BPE of exactly ``vocab_size`` ids (special tokens 0–3) trained on ``texts``.

    Words carry a leading ``▁`` (Metaspace), so decoding restores the spaces. Frequent
    words become single tokens and rare ones (names, fact words) split into pieces: at
    224 ids on the 20 000-document corpus, every lexicon word is one token and 131 of
    the 188 grammar words are not, 1.2 tokens per word.

    Raises:
      ValueError: if an attribute's lexicon word is not one token (answer words are
        scored as one next token; raise ``vocab_size``) or ``vocab_size`` cannot be filled.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=1,
                                  show_progress=False)
    tokenizer.train_from_iterator([*texts, " ".join(vocabulary)], trainer=trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise ValueError(f"The corpus fills only {tokenizer.get_vocab_size()} BPE ids of vocab_size={vocab_size}; "
                         "ask for fewer.")
    split = [word for attribute, values in lexicons.LEXICONS.items() for value in values
             for word in lexicons.lexicon_words(attribute, value) if len(tokenizer.encode(word).ids) != 1]
    if split:
        raise ValueError(f"At vocab_size={vocab_size} the BPE splits the lexicon words {split[:8]}"
                         f"{'…' if len(split) > 8 else ''}; answers are scored as one token, so raise vocab_size.")
    return _as_hf(tokenizer)


def train_corpus_tokenizer(config: corpus.CorpusConfig, documents: Sequence[corpus.Document]):
    """The organism tokenizer for ``documents`` drawn from ``config``."""
    return train_word_tokenizer([document.text for document in documents], corpus.grammar_vocabulary(config))


def vocabulary_size(config: corpus.CorpusConfig) -> int:
    """Number of ids the tokenizer of any corpus drawn from ``config`` has (known before sampling)."""
    return len(SPECIAL_TOKENS) + len(corpus.grammar_vocabulary(config))
