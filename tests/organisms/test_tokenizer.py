"""The word-level tokenizer: exact round trip, one token per lexicon word, loads offline as HF."""

from __future__ import annotations

import transformers

from lrt_jax.organisms import corpus, lexicons, probes, tokenizer

CONFIG = corpus.CorpusConfig(n_documents=300, fact_count=8)


def make_tokenizer():
    return tokenizer.train_corpus_tokenizer(CONFIG, corpus.generate_corpus(CONFIG))


def test_round_trip_and_special_tokens(tmp_path):
    trained = make_tokenizer()
    assert len(trained) == tokenizer.vocabulary_size(CONFIG)
    assert [trained.pad_token_id, trained.bos_token_id, trained.eos_token_id, trained.unk_token_id] == [0, 1, 2, 3]
    trained.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for document in corpus.generate_corpus(CONFIG)[:50]:
        ids = loaded(document.text).input_ids
        assert ids == trained(document.text).input_ids
        assert ids[0] == loaded.bos_token_id and loaded.unk_token_id not in ids
        assert len(ids) == len(document.text.split()) + 1
        assert loaded.decode(ids, skip_special_tokens=True) == document.text


def test_every_lexicon_and_answer_word_is_one_token():
    trained = make_tokenizer()
    for attribute, values in lexicons.LEXICONS.items():
        for value in values:
            words = lexicons.lexicon_words(attribute, value)
            assert len(set(probes.answer_token_ids(trained, words))) == len(words)
    for word in corpus.grammar_vocabulary(CONFIG):
        assert trained(word, add_special_tokens=False).input_ids != [trained.unk_token_id]


BPE_CONFIG = corpus.CorpusConfig(n_documents=2000, fact_count=8)


def test_bpe_round_trips_keeps_answer_words_whole_and_splits_rare_words(tmp_path):
    import pytest

    documents = corpus.generate_corpus(BPE_CONFIG)
    vocabulary = corpus.grammar_vocabulary(BPE_CONFIG)
    bpe = tokenizer.train_bpe_tokenizer([d.text for d in documents], vocabulary, 224)
    assert len(bpe) == 224 and [bpe.pad_token_id, bpe.bos_token_id, bpe.eos_token_id, bpe.unk_token_id] == [0, 1, 2, 3]
    bpe.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    pieces = 0
    for document in documents[:50]:
        ids = loaded(document.text).input_ids
        assert ids == bpe(document.text).input_ids and ids[0] == loaded.bos_token_id and loaded.unk_token_id not in ids
        assert loaded.decode(ids, skip_special_tokens=True) == document.text
        pieces += len(ids) - 1 - len(document.text.split())
    assert pieces > 0  # some words are several tokens: it is not the word tokenizer in disguise
    word_level = tokenizer.train_corpus_tokenizer(BPE_CONFIG, documents)
    for attribute, values in lexicons.LEXICONS.items():
        for value in values:
            words = lexicons.lexicon_words(attribute, value)
            ids = probes.answer_token_ids(bpe, words)
            assert [bpe.convert_ids_to_tokens(int(i)) for i in ids] == ["▁" + w for w in words]
            assert len(probes.answer_token_ids(word_level, words)) == len(words)
    with pytest.raises(ValueError, match="splits the lexicon words.*raise vocab_size"):
        tokenizer.train_bpe_tokenizer([d.text for d in documents], vocabulary, 120)
    with pytest.raises(ValueError, match="not single tokens"):
        probes.answer_token_ids(bpe, ["kloreia"])  # a fact word the BPE splits
