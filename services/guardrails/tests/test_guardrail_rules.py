"""Guardrail checks on simulated windows: harm trips them, noise does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from cineamate.common.experiments import GuardrailThresholds
from cineamate.guardrails.rules import Streaks, check_experiment, check_variant
from cineamate.guardrails.simulate import random_window, rolled_back
from cineamate.guardrails.window import Windows

THRESHOLDS = GuardrailThresholds()
WINDOW = timedelta(minutes=15)
START = datetime(2026, 3, 1, tzinfo=UTC)


def test_noise_alone_rolls_back_at_most_one_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    rollbacks = sum(rolled_back(rng) for _ in range(1_000))
    assert rollbacks / 1_000 <= 0.01


def test_errors_latency_concentration_and_a_real_drop_are_caught() -> None:
    rng = np.random.default_rng(12)
    assert rolled_back(rng, error_rate=0.05)
    assert rolled_back(rng, latency_ms=200.0)
    assert rolled_back(rng, items=1)
    assert rolled_back(rng, ctr_factor=0.8)


def test_windows_count_what_serves_and_clicks_bring() -> None:
    windows = Windows(keep=WINDOW * 2)
    for index in range(10):
        at = START + timedelta(minutes=index * 3)
        windows.add_serve(
            "e", "v", at, ok=index != 9, latency_ms=10.0, items=[7 if index < 6 else 100 + index, 1]
        )
        windows.add_clicks("e", "v", at, 1.0 if index % 2 else 0.0)
    stats = windows.stats("e", "v", WINDOW)  # minutes 12..27: serves 4 to 9
    assert (stats.calls, stats.errors, stats.impressions, stats.clicks) == (6, 1, 12, 3.0)
    assert (stats.top_item, stats.top_item_serves, stats.served) == (7, 2, 6)
    assert stats.latency_p95_ms is not None and 8.0 < stats.latency_p95_ms <= 12.0


def test_a_breach_must_hold_in_consecutive_evaluations() -> None:
    rng = np.random.default_rng(13)
    bad = random_window(rng, serves=2_000, ctr=0.05, error_rate=0.05)
    good = random_window(rng, serves=2_000, ctr=0.05)
    streaks = Streaks(2)
    (error_bad, *_) = check_variant(bad, None, THRESHOLDS, min_sample=200, alpha=0.01)
    (error_good, *_) = check_variant(good, None, THRESHOLDS, min_sample=200, alpha=0.01)
    assert error_bad.status == "breach"
    assert not streaks.record("e", "v", error_bad)
    assert not streaks.record("e", "v", error_good)  # the streak broke
    assert not streaks.record("e", "v", error_bad)
    assert streaks.record("e", "v", error_bad)


def test_too_small_a_sample_is_no_data_and_the_whole_experiment_is_checked() -> None:
    rng = np.random.default_rng(14)
    small = random_window(rng, serves=15, ctr=0.05, error_rate=0.5)
    checks = check_variant(small, small, THRESHOLDS, min_sample=200, alpha=0.01)
    assert {check.status for check in checks} == {"no_data"}
    broken = random_window(rng, serves=1_000, ctr=0.05, error_rate=0.05)
    assert check_experiment([broken, broken], THRESHOLDS, min_sample=200).status == "breach"
