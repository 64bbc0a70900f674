"""Simulated guardrail windows for checking false and true rollbacks (tests, benchmark).

A window is drawn at random as ``Windows.stats`` would report it for a variant
with the given CTR, error rate, latency and number of distinct top items; a
rollback needs the configured number of breaching evaluations in a row.
"""

from __future__ import annotations

import numpy as np

from cineamate.common.experiments import GuardrailThresholds
from cineamate.common.latency import BUCKET_BOUNDS_MS, BUCKETS, percentile
from cineamate.guardrails.rules import Streaks, check_variant
from cineamate.guardrails.window import WindowStats

__all__ = ["random_window", "rolled_back"]

THRESHOLDS = GuardrailThresholds()


def random_window(
    rng: np.random.Generator,
    *,
    serves: int,
    ctr: float,
    error_rate: float = 0.002,
    latency_ms: float = 20.0,
    items: int = 3_706,
    slate: int = 10,
) -> WindowStats:
    """A variant's window drawn at random (the same figures ``Windows.stats`` gives)."""
    errors = int(rng.binomial(serves, error_rate))
    histogram = np.bincount(
        np.searchsorted(BUCKET_BOUNDS_MS, rng.lognormal(np.log(latency_ms), 0.4, serves)),
        minlength=BUCKETS,
    )
    tops = np.bincount(rng.integers(0, items, serves - errors))
    impressions = (serves - errors) * slate
    return WindowStats(
        calls=serves,
        errors=errors,
        latency_p95_ms=percentile(histogram.tolist(), 0.95),
        impressions=impressions,
        clicks=float(rng.binomial(impressions, ctr)),
        top_item=int(tops.argmax()),
        top_item_serves=int(tops.max()),
        served=serves - errors,
    )


def rolled_back(
    rng: np.random.Generator,
    *,
    evaluations: int = 2,
    ctr_factor: float = 1.0,
    error_rate: float = 0.002,
    latency_ms: float = 20.0,
    items: int = 3_706,
) -> bool:
    """``evaluations`` consecutive evaluations of a variant (harmed as the arguments say)
    against a healthy control, 2,000 serves each; whether the variant was rolled back."""
    streaks = Streaks(evaluations)
    acted = False
    for _ in range(evaluations):
        control = random_window(rng, serves=2_000, ctr=0.05)
        variant = random_window(
            rng,
            serves=2_000,
            ctr=0.05 * ctr_factor,
            error_rate=error_rate,
            latency_ms=latency_ms,
            items=items,
        )
        for check in check_variant(variant, control, THRESHOLDS, min_sample=200, alpha=0.01):
            acted |= streaks.record("e", "v", check)
    return acted
