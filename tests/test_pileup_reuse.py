"""training/pileup_reuse.py: the per-chunk spread of pileup objects against independent events."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import training_script


@pytest.fixture(scope="module")
def pileup_reuse():
    return training_script("pileup_reuse")


def test_independent_events_spread_as_independent(pileup_reuse):
    # overdispersed (a Gamma-distributed rate per event, like the pileup profile) but
    # independent counts: the ratio to the per-event spread is 1, not their Poisson excess
    rng = np.random.default_rng(1)
    counts = rng.poisson(rng.gamma(6.25, 2.0 / 6.25, size=200_000))
    mean, ratio = pileup_reuse.excess_spread(counts, 1000)
    assert mean == pytest.approx(2.0, rel=0.01)
    assert ratio == pytest.approx(1.0, abs=0.2)  # 200 chunks: ±0.05


def test_a_chunk_shared_rate_shows_as_excess_spread(pileup_reuse):
    # each chunk's events share a rate drawn per chunk, as the objects of one reused pool do
    rng = np.random.default_rng(2)
    rate = np.repeat(rng.gamma(4.0, 0.025 / 4.0, size=100), 1000)
    mean, ratio = pileup_reuse.excess_spread(rng.poisson(rate), 1000)
    assert mean == pytest.approx(0.025, rel=0.1)
    # chunk means scatter by 0.0125 against sqrt(0.025 / 1000) = 0.005 for independent events
    assert 2.0 < ratio < 3.2
