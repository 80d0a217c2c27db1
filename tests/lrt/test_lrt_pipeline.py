"""The LRT pipeline's pieces against independent references (unpadded runs, loops, NumPy, sklearn)."""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp, log_softmax
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

import lrt_jax
from lrt_jax import lrt
from lrt_jax.organisms import probes
from lrt_jax.organisms.corpus import CorpusConfig, generate_corpus

TEXTS = [d.text for d in generate_corpus(CorpusConfig(n_documents=40, seed=5)) if d.kind == "attribute"]


def test_token_activations_equal_unpadded_runs_per_text(random_pair):
    source, _ = random_pair
    texts = TEXTS[:7]
    acts, text_index = lrt_jax.capture_text_tokens(source, texts, ["layers.1.resid_post"], batch_size=3,
                                                   progress=False)
    expected = []
    for text in texts:
        ids = np.asarray(source.tokenizer(text)["input_ids"])[None]
        expected.append(np.asarray(lrt_jax.capture(source, ids, ["layers.1.resid_post"])["layers.1.resid_post"])[0])
    np.testing.assert_allclose(acts["layers.1.resid_post"], np.concatenate(expected), atol=1e-5)
    np.testing.assert_array_equal(text_index, np.repeat(np.arange(7), [len(e) for e in expected]))


def test_last_token_activations_equal_unpadded_runs(random_pair):
    source, _ = random_pair
    texts = TEXTS[:5]
    got = lrt_jax.capture_texts(source, texts, ["layers.0.resid_post"], batch_size=2)["layers.0.resid_post"]
    for row, text in zip(got, texts):
        ids = np.asarray(source.tokenizer(text)["input_ids"])[None]
        full = lrt_jax.capture(source, ids, ["layers.0.resid_post"])["layers.0.resid_post"]
        np.testing.assert_allclose(row, np.asarray(full)[0, -1], atol=1e-5)


def test_steered_propensity_equals_loop_of_steered_forward_passes(random_pair):
    _, target = random_pair
    probe = probes.make_attribute_probe("sentiment", count=5, seed=3)
    positive = probes.answer_token_ids(target.tokenizer, probe.positive_answers)
    negative = probes.answer_token_ids(target.tokenizer, probe.negative_answers)
    vectors = np.asarray(jax.random.normal(jax.random.key(2), (2, 48)))
    alphas = np.asarray([0.0, 0.5, 2.0], np.float32)
    site = "layers.1.resid_post"
    got = lrt.steered_propensity(target, probe.prompts, site, vectors, alphas, positive, negative)
    assert got.shape == (2, 3, 5)
    for i, prompt in enumerate(probe.prompts):
        ids = np.asarray(target.tokenizer(prompt)["input_ids"])[None]
        for k in range(2):
            for a, alpha in enumerate(alphas):
                steer = lrt_jax.Add(site, vectors[k], float(alpha), normalize="residual")
                logits = np.asarray(lrt_jax.forward(target, ids, interventions=steer), np.float64)[0, -1]
                logp = log_softmax(logits)
                expected = logsumexp(logp[positive]) - logsumexp(logp[negative])
                np.testing.assert_allclose(got[k, a, i], expected, atol=2e-4)


def test_relative_shift_hand_computation():
    reference = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 4.0]])  # mean change 0, 1.5, 2.5
    other = np.array([[1.0, 1.0], [1.5, 2.0], [1.0, 1.0]])      # mean change 0, 0.75, 0
    np.testing.assert_allclose(lrt.relative_shift(other, reference)[1:], [0.5, 0.0])
    assert np.isnan(lrt.relative_shift(other, reference)[0])  # the reference does not move at α=0


def _held_out_pairs(source, target, texts, seed=0):
    """Every resid_post of both models on ``texts`` and the held-out rows, built like lrt.maps does."""
    source_sites = [f"layers.{i}.resid_post" for i in range(source.config.n_layers)]
    target_sites = [f"layers.{j}.resid_post" for j in range(target.config.n_layers)]
    paired = lrt.paired_token_activations(source, target, texts, source_sites, target_sites, progress=False)
    held_out = np.random.default_rng(seed).permutation(len(texts))[: len(texts) // 5]
    return paired, np.isin(paired.text_index, held_out)


def _sklearn_r2_matrix(paired, test, alpha):
    """R² of a scikit-learn Ridge fit per layer pair, one fit at a time."""
    r2 = np.zeros((len(paired.source), len(paired.target)))
    for i in range(len(paired.source)):
        x = paired.source[f"layers.{i}.resid_post"].astype(np.float64)
        for j in range(len(paired.target)):
            y = paired.target[f"layers.{j}.resid_post"].astype(np.float64)
            fit = Ridge(alpha=alpha).fit(x[~test], y[~test])
            r2[i, j] = r2_score(y[test], fit.predict(x[test]), multioutput="variance_weighted")
    return r2


def _numpy_linear_cka(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_fit_layer_maps_scores_every_layer_pair_like_a_loop_of_sklearn_fits(random_pair):
    source, target = random_pair
    texts = TEXTS[:20]
    with jax.numpy_rank_promotion("allow"):  # lrt_jax.mappers broadcasts [n, d] - [d]
        maps = lrt.fit_layer_maps(source, target, texts, ridge_alphas=(1.0,), seed=0, steering_pair=(1, 2),
                                  progress=False)
    paired, test = _held_out_pairs(source, target, texts)
    assert maps.r2.shape == maps.cka.shape == (2, 3)
    np.testing.assert_allclose(maps.r2, _sklearn_r2_matrix(paired, test, alpha=1.0), atol=1e-4)
    for i in range(2):
        for j in range(3):
            expected = _numpy_linear_cka(paired.source[f"layers.{i}.resid_post"][test].astype(np.float64),
                                         paired.target[f"layers.{j}.resid_post"][test].astype(np.float64))
            assert maps.cka[i, j] == pytest.approx(expected, rel=1e-4)
    # The steering map is the steering pair's own fit: it predicts with that cell's R².
    x, y = paired.source["layers.1.resid_post"][test], paired.target["layers.2.resid_post"][test]
    y_hat = x @ np.asarray(lrt_jax.mappers.linear(maps.state)) + np.asarray(lrt_jax.mappers.bias(maps.state))
    assert maps.r2[1, 2] == pytest.approx(r2_score(y, y_hat, multioutput="variance_weighted"), abs=1e-4)
    with pytest.raises(ValueError, match="steering_pair"):
        lrt.fit_layer_maps(source, target, texts, (1.0,), 0, steering_pair=(2, 0), progress=False)


def test_paired_activations_refuse_different_vocabularies_when_asked_for_tokens(random_pair, organism_tokenizer):
    source, target = random_pair
    other = organism_tokenizer.__class__(tokenizer_object=organism_tokenizer.backend_tokenizer)
    other.add_tokens(["zzzextra"])
    with pytest.raises(ValueError, match="different vocabularies.*pairing='words'"):
        lrt.paired_token_activations(source, target._replace(tokenizer=other), TEXTS[:2], ["layers.0.resid_post"],
                                     ["layers.0.resid_post"], pairing="tokens")
    with pytest.raises(ValueError, match="pairing must be"):
        lrt.paired_token_activations(source, target, TEXTS[:2], ["layers.0.resid_post"], ["layers.0.resid_post"],
                                     pairing="subwords")


def _bpe_target():
    from lrt_jax.organisms.tokenizer import train_bpe_tokenizer
    from lrt_jax.organisms.corpus import grammar_vocabulary

    corpus_config = CorpusConfig(n_documents=2000, fact_count=8)
    tokenizer = train_bpe_tokenizer([d.text for d in generate_corpus(corpus_config)], grammar_vocabulary(corpus_config),
                                    224)
    config = lrt_jax.ModelConfig("llama", len(tokenizer), 40, 2, 4, 2, 10, 64, max_position_embeddings=128)
    return lrt_jax.LM(config, lrt_jax.init_params(config, jax.random.key(2)), tokenizer, "random-bpe")


def test_word_pairing_takes_each_word_at_its_last_token_in_each_model(random_pair):
    """Reference: each text run alone, words located by the tokenizers' own ``word_ids`` (not offsets)."""
    source, _ = random_pair
    target = _bpe_target()
    texts = TEXTS[:6]
    site = "layers.1.resid_post"
    assert any(len(target.tokenizer(w, add_special_tokens=False).input_ids) > 1 for t in texts for w in t.split())
    paired = lrt.paired_token_activations(source, target, texts, [site], [site], progress=False)
    assert paired.pairing == "words"
    expected_source, expected_target, expected_index = [], [], []
    for index, text in enumerate(texts):
        rows = {}
        for lm in (source, target):
            encoding = lm.tokenizer(text)
            last = {}
            for position, word in enumerate(encoding.word_ids()):
                if word is not None:
                    last[word] = position
            acts = np.asarray(lrt_jax.capture(lm, np.asarray([encoding.input_ids]), [site])[site][0])
            rows[lm.name] = acts[[last[w] for w in sorted(last)]]
        assert len(rows[source.name]) == len(rows[target.name]) == len(text.split())
        expected_source.append(rows[source.name])
        expected_target.append(rows[target.name])
        expected_index += [index] * len(text.split())
    np.testing.assert_allclose(paired.source[site], np.concatenate(expected_source), atol=2e-5)
    np.testing.assert_allclose(paired.target[site], np.concatenate(expected_target), atol=2e-5)
    np.testing.assert_array_equal(paired.text_index, expected_index)
    # Same tokenizer: "auto" pairs tokens, so there are more rows than words.
    same = lrt.paired_token_activations(source, random_pair[1], texts, [site], [site], progress=False)
    assert same.pairing == "tokens" and len(same.text_index) > len(paired.text_index)


def test_summary_row_from_hand_made_propensities(hand_made_target):
    alphas = [0.0, 1.0]
    native = np.array([[0.0, 0.0, 0.0], [1.0, 3.0, 5.0]])  # shift 3 nats
    linear = np.array([[0.0, 0.0, 0.0], [1.4, 1.6, 4.2]])  # shift 2.4 = 80%
    affine = np.array([[0.0, 0.0, 0.0], [1.5, 1.5, 1.5]])  # 50%
    random = np.array([[0.0, 0.0, 0.0], [0.45, 0.0, 0.0]])  # 5%
    unmapped = np.array([[0.0, 0.0, 0.0], [0.0, 0.6, 1.2]])  # 20%
    target = hand_made_target({"native": native, "transferred_linear": linear, "transferred_affine": affine,
                               "random": random, "unmapped": unmapped}, alphas)
    row = lrt.report.summary_row("sentiment", "large", target)
    assert row.native_shift == pytest.approx(3.0)
    assert row.relative_shift == pytest.approx({"transferred_linear": 0.8, "transferred_affine": 0.5, "random": 0.05,
                                                "unmapped": 0.2}, rel=1e-5)
    assert row.pearson_linear == pytest.approx(np.corrcoef(native[1], linear[1])[0, 1], rel=1e-5)
    assert row.steers and row.passes
    np.testing.assert_allclose(target.mse("transferred_affine"), ((native - affine) ** 2).mean(axis=1), rtol=1e-6)
    slope = np.polyfit(alphas, unmapped.mean(axis=1), 1)[0]
    assert target.slope("unmapped") == pytest.approx(slope, rel=1e-5)
    table = lrt.format_table([row])
    assert f"| sentiment | large | 3.00 | 80% | 50% | 5% | 20% | {row.pearson_linear:.2f} | 0.70 | yes |" in table


def _row(**fields):
    from lrt_jax.lrt import SummaryRow

    base = dict(attribute="sentiment", target="large", native_shift=2.0, steers=True, pearson_linear=0.5,
                cos_linear=0.9, passes=False, kl={kind: 0.0 for kind in lrt.VECTOR_KINDS},
                relative_shift={"transferred_linear": 5.75, "transferred_affine": -8.8, "random": 0.4,
                                "unmapped": 1.0})
    return SummaryRow(**{**base, **fields})


def test_report_table_shows_no_ratios_over_a_native_shift_below_the_threshold():
    from lrt_jax.lrt.report import STEERS_THRESHOLD, format_table

    rows = [_row(target="large", native_shift=2 * STEERS_THRESHOLD, steers=True),
            _row(target="moe", native_shift=0.1 * STEERS_THRESHOLD, steers=False)]
    steering_line, quiet_line = format_table(rows).splitlines()[2:4]
    assert "| 575% | -880% | 40% | 100% |" in steering_line
    assert "| — | — | — | — |" in quiet_line and "native does not steer" in quiet_line
    assert "%" not in quiet_line
    assert f"less than {STEERS_THRESHOLD:g} nats" in format_table(rows)


def test_lrt_experiment_runs_across_tokenizers_on_word_pairs(random_pair):
    """A word-level source and a BPE target: maps fitted on word pairs (sklearn reference), and the target's
    unsteered propensity scored with its own ``▁word`` answer ids (reference: one forward pass per prompt)."""
    source, _ = random_pair
    target = _bpe_target()
    texts = TEXTS[:20]
    config = lrt.LRTConfig(source_layer=1, target_layers=(("bpe", 1),), attributes=("sentiment",), alphas=(0.0, 1.0),
                           n_fit_texts=20, n_pairs=4, n_probe_prompts=4, ridge_alphas=(1.0,), n_random=1,
                           max_new_tokens=2)
    with jax.numpy_rank_promotion("allow"):
        result = lrt.run_lrt_experiment(source, {"bpe": target}, texts, config, progress=False)
    paired, test = _held_out_pairs(source, target, texts)
    assert paired.pairing == "words"
    np.testing.assert_allclose(result.maps["bpe"].r2, _sklearn_r2_matrix(paired, test, alpha=1.0), atol=1e-4)
    probe = probes.make_attribute_probe("sentiment", count=4, seed=config.seed + 23)
    positive = probes.answer_token_ids(target.tokenizer, probe.positive_answers)
    negative = probes.answer_token_ids(target.tokenizer, probe.negative_answers)
    assert all(target.tokenizer.convert_ids_to_tokens(int(i)).startswith("▁") for i in [*positive, *negative])
    expected = []
    for prompt in probe.prompts:
        ids = np.asarray(target.tokenizer(prompt)["input_ids"])[None]
        logp = log_softmax(np.asarray(lrt_jax.forward(target, ids), np.float64)[0, -1])
        expected.append(logsumexp(logp[positive]) - logsumexp(logp[negative]))
    steered = result.attributes["sentiment"].targets["bpe"]
    np.testing.assert_allclose(steered.propensity("native")[0], expected, atol=1e-4)
