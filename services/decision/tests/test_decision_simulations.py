"""The decision engine's error rates, by simulation with fixed seeds.

Smaller versions of the benchmark's simulations: A/A experiments evaluated
every hour for 14 days rarely ship; a real 10% uplift ships often; the
sample-ratio-mismatch test flags a 50.5/49.5 split at 200,000 users and not
an exact one; the confidence sequence covers the true difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from cineamate.common.experiments import DecisionCriteria
from cineamate.decision.rules import Counts, decide
from cineamate.decision.sequential import mixture_sprt, sample_ratio_mismatch
from cineamate.decision.simulate import simulate

CRITERIA = DecisionCriteria()


def test_a_a_experiments_watched_every_hour_rarely_ship() -> None:
    result = simulate(300, base_ctr=0.02, uplift=0.0, users_per_day=5_000, seed=1)
    assert result.ship_share <= 0.05


def test_a_real_uplift_ships_after_the_minimum_window() -> None:
    result = simulate(60, base_ctr=0.02, uplift=0.25, users_per_day=5_000, seed=2)
    assert result.ship_share >= 0.8
    assert min(result.ship_days) >= CRITERIA.min_window_days


def test_the_confidence_sequence_covers_the_truth_at_every_look() -> None:
    rng = np.random.default_rng(3)
    p, q, misses, runs = 0.022, 0.02, 0, 300
    for _ in range(runs):
        n = np.cumsum(rng.poisson(200, size=100))
        a = np.cumsum(rng.binomial(np.diff(n, prepend=0), p))
        b = np.cumsum(rng.binomial(np.diff(n, prepend=0), q))
        for step in range(100):
            result = mixture_sprt(a[step], n[step], b[step], n[step], alpha=0.05, tau=0.001)
            if result and not result.low <= p - q <= result.high:
                misses += 1
                break
    assert misses / runs <= 0.05


def test_sample_ratio_mismatch_flags_a_small_skew_at_scale_only() -> None:
    configured = {"control": 0.5, "treatment": 0.5}
    skewed = sample_ratio_mismatch({"control": 101_000, "treatment": 99_000}, configured)
    even = sample_ratio_mismatch({"control": 100_000, "treatment": 100_000}, configured)
    assert skewed is not None and skewed.mismatch
    assert even is not None and not even.mismatch and even.p_value == pytest.approx(1.0)


def test_significant_harm_kills_and_a_mismatch_blocks_ship() -> None:
    harm = decide(Counts(50_000, 800), Counts(50_000, 1_000), criteria=CRITERIA, days=3, srm=None)
    assert harm.decision == "kill"
    mismatch = sample_ratio_mismatch({"a": 60_000, "b": 40_000}, {"a": 0.5, "b": 0.5})
    blocked = decide(
        Counts(100_000, 2_600), Counts(100_000, 2_000), criteria=CRITERIA, days=8, srm=mismatch
    )
    assert blocked.decision != "ship"
    assert blocked.criteria["no_sample_ratio_mismatch"] is False
    timeout = decide(
        Counts(50_000, 1_000), Counts(50_000, 1_000), criteria=CRITERIA, days=14.5, srm=None
    )
    assert timeout.decision == "kill"
