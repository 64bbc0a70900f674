"""When each request of an open-loop run is due: request i at ``start + i / rate``.

The plan never looks at the responses, which is what makes the load open:
a server that stalls does not slow the arrivals down, so every request planned
during the stall is late, and the lateness is measured from the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Schedule"]

FloatArray = npt.NDArray[np.float64]

# Products such as 2.0 * 500 are exact, but 0.1 * 30 is not; a hair below an integer
# counts as the integer, so a rate times a duration plans the number it reads as.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Schedule:
    """Requests at a constant rate over ``warmup + duration`` seconds; those planned in the
    warm-up are sent but not measured.

    >>> plan = Schedule(rate=100.0, duration=1.0, warmup=0.5)
    >>> plan.total, plan.first_measured, plan.measured
    (150, 50, 100)
    >>> plan.offset(50), plan.due(0.0), plan.due(0.015)
    (0.5, 1, 2)
    """

    rate: float
    duration: float
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number, not {self.rate!r}")
        if not (self.duration > 0 and math.isfinite(self.duration)):
            raise ValueError(f"duration must be a positive number, not {self.duration!r}")
        if not (self.warmup >= 0 and math.isfinite(self.warmup)):
            raise ValueError(f"warmup must be zero or more, not {self.warmup!r}")

    @property
    def total(self) -> int:
        """Requests planned, warm-up included: every i with i / rate < warmup + duration."""
        return _count_before(self.rate, self.warmup + self.duration)

    @property
    def first_measured(self) -> int:
        """Index of the first request planned after the warm-up."""
        return _count_before(self.rate, self.warmup)

    @property
    def measured(self) -> int:
        """Requests planned in the measured window."""
        return self.total - self.first_measured

    @property
    def end(self) -> float:
        """Offset (s) at which the plan ends: no request is due at or after it."""
        return self.warmup + self.duration

    def offset(self, index: int) -> float:
        """Planned offset (s) of request ``index`` from the start."""
        return index / self.rate

    def offsets(self) -> FloatArray:
        """Planned offsets (s) of every request, warm-up included."""
        return np.arange(self.total, dtype=np.float64) / self.rate

    def due(self, elapsed: float) -> int:
        """How many requests are due ``elapsed`` seconds after the start (planned at or before)."""
        if elapsed < 0:
            return 0
        return min(self.total, math.floor(elapsed * self.rate + _EPSILON) + 1)


def _count_before(rate: float, seconds: float) -> int:
    """The number of i >= 0 with i / rate < seconds."""
    return max(0, math.ceil(seconds * rate - _EPSILON))
