"""Per variant, what the guardrails watch, kept by minute of event time, free of I/O.

Each serve adds a call (an error if its status is not ok), its latency, its
slate's impressions and its top-ranked item; each clicked outcome adds a
click to the minute its serve was in. A window is the minutes within
``length`` of an experiment's latest event.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cineamate.common.latency import BUCKETS, bucket_of, percentile

__all__ = ["MinuteStats", "WindowStats", "Windows"]


@dataclass
class MinuteStats:
    calls: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    impressions: int = 0
    clicks: float = 0.0
    top_items: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True)
class WindowStats:
    """One variant's figures over a window."""

    calls: int
    errors: int
    latency_p95_ms: float | None
    impressions: int
    clicks: float
    top_item: int | None
    top_item_serves: int
    served: int  # serves with at least one item

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def concentration(self) -> float | None:
        return self.top_item_serves / self.served if self.served else None

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class Windows:
    """Minute buckets per (experiment, variant), pruned beyond ``keep``."""

    def __init__(self, keep: timedelta) -> None:
        self._keep = keep
        self._minutes: dict[tuple[str, str], dict[datetime, MinuteStats]] = defaultdict(dict)
        self.latest: dict[str, datetime] = {}

    def _bucket(self, experiment_id: str, variant: str, moment: datetime) -> MinuteStats:
        minutes = self._minutes[(experiment_id, variant)]
        minute = _minute(moment)
        stats = minutes.get(minute)
        if stats is None:
            stats = minutes[minute] = MinuteStats()
        latest = self.latest.get(experiment_id)
        if latest is None or moment > latest:
            self.latest[experiment_id] = moment
        return stats

    def add_serve(
        self,
        experiment_id: str,
        variant: str,
        served_at: datetime,
        *,
        ok: bool,
        latency_ms: float,
        items: list[int],
    ) -> None:
        stats = self._bucket(experiment_id, variant, served_at)
        stats.calls += 1
        stats.errors += not ok
        stats.latency[bucket_of(latency_ms)] += 1
        stats.impressions += len(items)
        if items:
            stats.top_items[items[0]] += 1

    def add_clicks(
        self, experiment_id: str, variant: str, served_at: datetime, clicks: float
    ) -> None:
        self._bucket(experiment_id, variant, served_at).clicks += clicks

    def forget(self, experiment_id: str, variant: str) -> None:
        """Drop a variant's history (after its rollback is undone, it starts afresh)."""
        self._minutes.pop((experiment_id, variant), None)

    def variants(self, experiment_id: str) -> list[str]:
        return sorted(v for (e, v) in self._minutes if e == experiment_id)

    def stats(self, experiment_id: str, variant: str, length: timedelta) -> WindowStats:
        """``variant``'s figures over the ``length`` before the experiment's latest event."""
        latest = self.latest.get(experiment_id)
        minutes = self._minutes.get((experiment_id, variant), {})
        if latest is None:
            chosen: list[MinuteStats] = []
        else:
            start = _minute(latest - length)
            chosen = [stats for minute, stats in minutes.items() if minute >= start]
        latency = [0] * BUCKETS
        top: Counter[int] = Counter()
        for stats in chosen:
            for index, count in enumerate(stats.latency):
                latency[index] += count
            top.update(stats.top_items)
        best = top.most_common(1)
        return WindowStats(
            calls=sum(s.calls for s in chosen),
            errors=sum(s.errors for s in chosen),
            latency_p95_ms=percentile(latency, 0.95),
            impressions=sum(s.impressions for s in chosen),
            clicks=sum(s.clicks for s in chosen),
            top_item=best[0][0] if best else None,
            top_item_serves=best[0][1] if best else 0,
            served=sum(top.values()),
        )

    def prune(self) -> None:
        """Forget minutes older than ``keep`` before each experiment's latest event."""
        for (experiment_id, variant), minutes in list(self._minutes.items()):
            latest = self.latest.get(experiment_id)
            if latest is None:
                continue
            horizon = _minute(latest - self._keep)
            for minute in [m for m in minutes if m < horizon]:
                del minutes[minute]
            if not minutes:
                del self._minutes[(experiment_id, variant)]
