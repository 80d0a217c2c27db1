"""The built-in organisms carry every attribute strongly and linearly (slow: trains them on a cache miss)."""

from __future__ import annotations

import pytest

from lrt_jax import organisms
from lrt_jax.organisms import diagnostics


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(organisms.RECIPES))
@pytest.mark.parametrize("attribute", sorted(organisms.LEXICONS))
def test_attribute_steers_the_next_token_and_is_linearly_readable(name, attribute):
    lm = organisms.organism(name, progress=False)
    signal = diagnostics.measure_attribute_signal(lm, attribute, layer=lm.config.n_layers // 2)
    assert signal["context_gap"] > 5.0, signal
    assert signal["probe_accuracy"] > 0.95, signal
    assert signal["steering_shift"] > 1.0, signal
