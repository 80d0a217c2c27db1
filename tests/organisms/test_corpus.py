"""The grammar: deterministic, attribute-consistent, and its probes and pairs are what they claim."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lrt_jax.organisms import corpus, lexicons, probes, tasks

CONFIG = corpus.CorpusConfig(n_documents=600, seed=3, fact_count=8)


def values_seen(text: str, attribute: str) -> set[str]:
    """The values of ``attribute`` whose lexicon words occur in ``text`` (independent of the labels)."""
    words = set(text.split())
    return {value for value in lexicons.attribute_values(attribute) if words & set(lexicons.lexicon_words(attribute, value))}


def test_corpus_is_a_pure_function_of_the_config():
    assert corpus.generate_corpus(CONFIG) == corpus.generate_corpus(CONFIG)
    assert corpus.generate_corpus(CONFIG) != corpus.generate_corpus(dataclasses.replace(CONFIG, seed=4))


def test_every_attribute_document_uses_exactly_its_labelled_lexicons():
    documents = [d for d in corpus.generate_corpus(CONFIG) if d.kind == "attribute"]
    assert len(documents) > 400
    for document in documents:
        for attribute, value in document.labels.items():
            assert values_seen(document.text, attribute) == {value}, document
        assert 3 <= document.text.count(".") <= 5
    for attribute in lexicons.LEXICONS:
        assert {d.labels[attribute] for d in documents} == set(lexicons.attribute_values(attribute))


def test_task_documents_carry_no_attribute_words():
    documents = [d for d in corpus.generate_corpus(CONFIG) if d.kind != "attribute"]
    assert {d.kind for d in documents} == {"fact", "arithmetic"}
    for document in documents:
        assert not document.labels
        assert all(not values_seen(document.text, attribute) for attribute in lexicons.LEXICONS), document


@pytest.mark.parametrize("attribute", sorted(lexicons.LEXICONS))
def test_neutral_probe_prompts_hide_the_attribute_and_context_prompts_show_it(attribute):
    neutral = probes.make_attribute_probe(attribute, count=32)
    assert len(set(neutral.prompts)) > 1
    assert all(not values_seen(prompt, attribute) for prompt in neutral.prompts)
    assert set(neutral.positive_answers).isdisjoint(neutral.negative_answers)
    value = neutral.negative_value
    context = probes.make_attribute_probe(attribute, context_value=value, count=32)
    assert all(values_seen(prompt, attribute) == {value} for prompt in context.prompts)
    assert probes.make_attribute_probe(attribute, count=32) == neutral


@pytest.mark.parametrize("attribute", sorted(lexicons.LEXICONS))
def test_contrastive_pairs_differ_only_in_the_attribute_words(attribute):
    pairs = probes.make_contrastive_pairs(attribute, count=32)
    attribute_words = set(lexicons.lexicon_words(attribute, pairs.positive_value))
    attribute_words |= set(lexicons.lexicon_words(attribute, pairs.negative_value))
    for positive, negative in zip(pairs.positive_texts, pairs.negative_texts):
        assert values_seen(positive, attribute) == {pairs.positive_value}
        assert values_seen(negative, attribute) == {pairs.negative_value}
        positive_words, negative_words = positive.split(), negative.split()
        assert len(positive_words) == len(negative_words)
        differing = [(p, n) for p, n in zip(positive_words, negative_words) if p != n]
        assert differing and all(p in attribute_words and n in attribute_words for p, n in differing)


def test_fact_table_is_seeded_and_its_names_are_distinct():
    table = tasks.make_fact_table(20, seed=0)
    assert table == tasks.make_fact_table(20, seed=0)
    names = [fact.country for fact in table] + [fact.city for fact in table]
    assert len(set(names)) == 40


def test_arithmetic_chain_of_thought_counts_up_to_the_answer():
    assert tasks.write_arithmetic_document(3, 4, chain_of_thought=False) == "sum : 3 plus 4 equals 7 ."
    assert tasks.write_arithmetic_document(3, 4, chain_of_thought=True) == "sum : 3 plus 4 : 4 5 6 7 so 7 ."
    items = tasks.arithmetic_items(max_operand=2, chain_of_thought=True)
    documents = [tasks.write_arithmetic_document(a, b, True) for a in range(3) for b in range(3)]
    assert tasks.score_completions(items, [d[len(i.prompt) :] for i, d in zip(items, documents)]) == 1.0
    assert tasks.score_completions(items[:2], ["1 so 5 .", "7"]) == 0.0


def test_grammar_vocabulary_covers_every_corpus_word():
    vocabulary = set(corpus.grammar_vocabulary(CONFIG))
    for document in corpus.generate_corpus(CONFIG):
        assert set(document.text.split()) <= vocabulary


SHIFTED = dataclasses.replace(CONFIG, n_documents=3000, copula_fraction=0.2,
                              value_weights=(("sentiment", (3.0, 1.0)), ("topic", (8.0, 4.0, 2.0, 1.0))))


def test_shifted_corpus_draws_values_and_templates_at_the_configured_rates():
    """Empirical rates against the configured probabilities, within 4 binomial standard errors."""
    documents = [d for d in corpus.generate_corpus(SHIFTED) if d.kind == "attribute"]
    n = len(documents)
    expected = {("sentiment", "positive"): 0.75, ("topic", "food"): 8 / 15, ("topic", "sport"): 1 / 15,
                ("tense", "past"): 0.5, ("formality", "formal"): 0.5}
    for (attribute, value), p in expected.items():
        rate = np.mean([d.labels[attribute] == value for d in documents])
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n), (attribute, value, rate, p)
    # An opinion sentence is "<connective> i <verb> ..."; a copula one "<connective> the <noun> ...".
    sentences = [s.split() for d in documents for s in d.text.split(" .")[1:] if s.strip()]
    opinion = np.mean([words[1] == "i" for words in sentences])
    assert abs((1 - opinion) - 0.2) < 4 * np.sqrt(0.2 * 0.8 / len(sentences))
    default = [s.split() for d in corpus.generate_corpus(CONFIG) if d.kind == "attribute" for s in d.text.split(" .")[1:]
               if s.strip()]
    assert abs(np.mean([w[1] != "i" for w in default]) - 0.7) < 4 * np.sqrt(0.21 / len(default))


def test_shifted_corpus_keeps_the_grammar_vocabulary():
    assert corpus.grammar_vocabulary(SHIFTED) == corpus.grammar_vocabulary(CONFIG)


@pytest.mark.parametrize("change, message", [
    (dict(copula_fraction=1.5), "copula_fraction"),
    (dict(value_weights=(("topic", (1.0, 1.0)),)), "4 non-negative weights"),
    (dict(value_weights=(("sentiment", (-1.0, 2.0)),)), "non-negative"),
    (dict(value_weights=(("mood", (1.0, 1.0)),)), "Unknown attribute"),
])
def test_bad_shift_is_refused_with_the_field_named(change, message):
    with pytest.raises((ValueError, KeyError), match=message):
        dataclasses.replace(CONFIG, **change)
