"""Timing loops: one ``perf_counter_ns`` pair per call, garbage collection off while timing.

Per-call samples give tails (p99) as well as medians; on a shared, noisy machine
the median is the figure and the mean is never used.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Summary", "summarise", "time_calls"]

IntArray = npt.NDArray[np.int64]


def time_calls(call: Callable[[], object], repeats: int) -> IntArray:
    """Nanoseconds taken by each of ``repeats`` calls, collected first and with gc disabled."""
    samples = [0] * repeats
    clock = time.perf_counter_ns
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for index in range(repeats):
            start = clock()
            call()
            samples[index] = clock() - start
    finally:
        if was_enabled:
            gc.enable()
    return np.asarray(samples, dtype=np.int64)


@dataclass(frozen=True)
class Summary:
    """Order statistics of timing samples, in microseconds.

    >>> summarise(np.array([1_000, 2_000, 3_000])).median_us
    2.0
    """

    samples: int
    median_us: float
    p90_us: float
    p99_us: float
    min_us: float
    max_us: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready form."""
        return asdict(self)


def summarise(samples_ns: IntArray) -> Summary:
    """Median, p90, p99, min and max of nanosecond samples, in microseconds."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1_000.0
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return Summary(
        samples=int(us.size),
        median_us=float(p50),
        p90_us=float(p90),
        p99_us=float(p99),
        min_us=float(us.min()),
        max_us=float(us.max()),
    )
