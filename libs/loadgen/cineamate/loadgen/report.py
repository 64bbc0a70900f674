"""What an open-loop run measured, computed from per-request samples without any I/O.

The engine records, for every planned request, when it was written, when its
response ended, its status and whether a connection was idle when it fell
due. Everything in the report derives from those arrays, so the rules
(latency from the planned time, what counts as an error, when the generator
itself fell behind) are plain functions that tests can feed by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cineamate.loadgen.schedule import Schedule

__all__ = [
    "TRANSPORT_ERRORS",
    "LatencySummary",
    "LoadReport",
    "Samples",
    "build_report",
    "summarise_latencies",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Status codes below zero stand for failures without an HTTP status.
TRANSPORT_ERRORS = {
    -1: "transport.closed",
    -2: "transport.protocol",
    -3: "transport.connect",
}
_QUANTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True)
class LatencySummary:
    """Order statistics of latencies, in milliseconds (NaN when there are none).

    >>> summarise_latencies([0.001, 0.002, 0.003]).p50_ms
    2.0
    """

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready form."""
        return asdict(self)


def summarise_latencies(seconds: npt.ArrayLike) -> LatencySummary:
    """p50, p90, p99, p99.9 and max of latencies given in seconds (NaNs are ignored)."""
    values = np.asarray(seconds, dtype=np.float64)
    values = values[~np.isnan(values)] * 1_000.0
    if values.size == 0:
        return LatencySummary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    p50, p90, p99, p999 = np.percentile(values, _QUANTILES)
    return LatencySummary(
        int(values.size), float(p50), float(p90), float(p99), float(p999), float(values.max())
    )


@dataclass(frozen=True)
class Samples:
    """Per-request records of the measured window, times in seconds from the run's start.

    ``sent_s`` is NaN for a request never written, ``done_s`` for one that got no
    response; ``status`` is the HTTP status, 0 for none, or a key of TRANSPORT_ERRORS.
    ``started_at`` is ``time.perf_counter()`` at the start, to line up outside events;
    ``ended_s`` is when the run stopped waiting for responses.
    """

    planned_s: FloatArray
    sent_s: FloatArray
    done_s: FloatArray
    status: IntArray
    found_idle: BoolArray
    started_at: float = 0.0
    ended_s: float = math.nan

    @property
    def latency_s(self) -> FloatArray:
        """From the planned time to the end of the response; NaN without a response."""
        latency: FloatArray = np.where(self.status > 0, self.done_s - self.planned_s, np.nan)
        return latency

    @property
    def waited_s(self) -> FloatArray:
        """The latency of every request, an unanswered one counting the time it had waited
        when the run ended: a lower bound on what it would have taken."""
        waited: FloatArray = np.where(
            self.status > 0, self.done_s - self.planned_s, self.ended_s - self.planned_s
        )
        return waited


@dataclass(frozen=True)
class LoadReport:
    """The outcome of one open-loop run at one planned rate.

    ``errors_by_status`` counts every non-2xx status and transport failure;
    ``timeouts`` were written but unanswered when the grace period ended, and
    ``unsent`` were still waiting for a connection then. ``latency`` covers every
    response (any status), from the planned time to the response's last byte;
    ``latency_all`` covers every planned request, the unanswered ones with the time
    they had waited when the run gave up, so its tail is a lower bound that a
    server which stops answering cannot improve.
    """

    target: str
    planned_rate_per_s: float
    warmup_s: float
    duration_s: float
    connections: int
    planned: int
    sent: int
    completed: int
    ok: int
    errors_by_status: dict[str, int]
    timeouts: int
    unsent: int
    achieved_rate_per_s: float
    latency: LatencySummary
    latency_all: LatencySummary
    send_lag_max_ms: float
    generator_lag_p99_ms: float
    generator_lag_max_ms: float
    generator_fell_behind: bool
    generator_cpu_share: float
    samples: Samples = field(repr=False, compare=False)

    @property
    def failed(self) -> int:
        """Requests of the window that did not end in a 2xx response."""
        return self.planned - self.ok

    @property
    def error_rate(self) -> float:
        """Share of the planned requests that failed (errors, timeouts, unsent)."""
        return self.failed / self.planned if self.planned else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the per-request samples."""
        body = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("samples", "latency", "latency_all")
        }
        body["latency_ms"] = self.latency.as_dict()
        body["latency_all_ms"] = self.latency_all.as_dict()
        body["failed"] = self.failed
        body["error_rate"] = self.error_rate
        return body


def build_report(
    *,
    target: str,
    schedule: Schedule,
    connections: int,
    samples: Samples,
    lag_limit_s: float,
    cpu_seconds: float,
    wall_seconds: float,
) -> LoadReport:
    """The report of a run from its measured-window samples."""
    status = samples.status
    answered = status > 0
    errors: dict[str, int] = {}
    failures = status[(status != 0) & ((status < 200) | (status >= 300))]
    codes, counts = np.unique(failures, return_counts=True)
    for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
        errors[TRANSPORT_ERRORS.get(code, str(code))] = count
    sent = ~np.isnan(samples.sent_s)
    completed = int(answered.sum())
    window_start = schedule.warmup
    if completed:
        last_done = float(np.nanmax(np.where(answered, samples.done_s, np.nan)))
        span = max(schedule.duration, last_done - window_start)
        achieved = completed / span
    else:
        achieved = 0.0
    send_lag = samples.sent_s[sent] - samples.planned_s[sent]
    prompt = sent & samples.found_idle
    idle_lag = samples.sent_s[prompt] - samples.planned_s[prompt]
    generator_lag_max = float(idle_lag.max()) if idle_lag.size else 0.0
    return LoadReport(
        target=target,
        planned_rate_per_s=schedule.rate,
        warmup_s=schedule.warmup,
        duration_s=schedule.duration,
        connections=connections,
        planned=int(status.size),
        sent=int(sent.sum()),
        completed=completed,
        ok=int(((status >= 200) & (status < 300)).sum()),
        errors_by_status=errors,
        timeouts=int((sent & (status == 0)).sum()),
        unsent=int((~sent & (status == 0)).sum()),
        achieved_rate_per_s=achieved,
        latency=summarise_latencies(samples.latency_s),
        latency_all=summarise_latencies(samples.waited_s),
        send_lag_max_ms=1_000.0 * float(send_lag.max()) if send_lag.size else 0.0,
        generator_lag_p99_ms=1_000.0 * float(np.percentile(idle_lag, 99)) if idle_lag.size else 0.0,
        generator_lag_max_ms=1_000.0 * generator_lag_max,
        generator_fell_behind=generator_lag_max > lag_limit_s,
        generator_cpu_share=cpu_seconds / wall_seconds if wall_seconds > 0 else 0.0,
        samples=samples,
    )
