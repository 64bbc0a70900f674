"""Prometheus metrics of the reward join."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "DUPLICATE_CLICKS",
    "DUPLICATE_SERVES",
    "HELD_CLICKS",
    "LATE_CLICKS",
    "OUTCOMES",
    "WATERMARK_DELAY",
]

OUTCOMES = Counter(
    "cineamate_reward_outcomes_total",
    "Item outcomes emitted to the rewards topic, by reward (1 clicked, 0 not).",
    ("reward",),
)
LATE_CLICKS = Counter(
    "cineamate_reward_late_clicks_total", "Clicks that came after their attribution window."
)
DUPLICATE_CLICKS = Counter(
    "cineamate_reward_duplicate_clicks_total", "Clicks on an item already rewarded, ignored."
)
DUPLICATE_SERVES = Counter(
    "cineamate_reward_duplicate_serves_total", "Serves seen before (redelivered), ignored."
)
HELD_CLICKS = Counter(
    "cineamate_reward_held_clicks_total", "Clicks that came before their serve and were held."
)
WATERMARK_DELAY = Gauge(
    "cineamate_reward_watermark_delay_seconds",
    "Wall clock minus the watermark of a join partition (how far event time lags).",
    ("partition",),
)
