"""Latency histograms: fixed bucket bounds, and percentiles read back from the counts.

Buckets grow by about 20% from 0.1 ms to 10 s (plus one open-ended bucket),
so a percentile read from the counts is within about 10% of the true value.
The SLA line is counted exactly, per serve, at ingest.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["BUCKET_BOUNDS_MS", "bucket_of", "merge", "percentile"]


def _bounds() -> tuple[float, ...]:
    bounds = []
    value = 0.1
    while value < 10_000.0:
        bounds.append(round(value, 4))
        value *= 1.2
    return (*bounds, 10_000.0)


# Upper bound (inclusive) of each bucket in milliseconds; one more bucket holds the rest.
BUCKET_BOUNDS_MS: tuple[float, ...] = _bounds()
BUCKETS = len(BUCKET_BOUNDS_MS) + 1


def bucket_of(latency_ms: float) -> int:
    """Index of the bucket ``latency_ms`` falls in."""
    return bisect.bisect_left(BUCKET_BOUNDS_MS, latency_ms)


def merge(histograms: Sequence[Sequence[int]]) -> list[int]:
    """Element-wise sum of histograms (shorter ones count as zeros beyond their end)."""
    total = [0] * BUCKETS
    for histogram in histograms:
        for index, count in enumerate(histogram):
            total[index] += int(count)
    return total


def percentile(histogram: Sequence[int], quantile: float) -> float | None:
    """The ``quantile`` (0..1) of the latencies counted, interpolated within its bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = BUCKET_BOUNDS_MS[index - 1] if index > 0 else 0.0
            high = BUCKET_BOUNDS_MS[index] if index < len(BUCKET_BOUNDS_MS) else low * 1.2
            return low + (high - low) * max(rank - seen, 0.0) / count
        seen += count
    return BUCKET_BOUNDS_MS[-1]
