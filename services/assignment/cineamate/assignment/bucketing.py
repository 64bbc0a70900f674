"""Sticky assignment: users hash to buckets, buckets belong to variants.

``hash(salt, user_id) -> bucket in [0, 10000)``. The first ``traffic`` share
of buckets is in the experiment; the rest see the control. The in-experiment
buckets are divided among the variants by weight. The division is kept with
the experiment and changed minimally: when weights change or traffic grows,
each variant that must shrink gives up buckets from its end, and only those
move to the variants that must grow, so the share of users who change variant
is the least possible (the total variation distance between the old and new
split). When traffic shrinks, the buckets past the new share leave the
experiment, and the rest are rebalanced in the same minimal way.

Everything here is a pure function of the configuration and the user id.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BUCKETS", "Allocation", "Segment", "allocate", "bucket_of", "target_counts"]

BUCKETS = 10_000


@dataclass(frozen=True, order=True)
class Segment:
    """Buckets [start, end) belong to ``variant``."""

    start: int
    end: int
    variant: str

    @property
    def size(self) -> int:
        return self.end - self.start


def bucket_of(salt: str, user_id: str) -> int:
    """The user's bucket: stable for a salt, uniform over [0, BUCKETS)."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def target_counts(weights: Sequence[tuple[str, float]], total: int) -> dict[str, int]:
    """Buckets per variant proportional to weight, summing exactly to ``total``
    (largest remainder; ties go to the earlier variant)."""
    weight_sum = sum(weight for _, weight in weights)
    exact = [(name, total * weight / weight_sum) for name, weight in weights]
    counts = {name: int(share) for name, share in exact}
    left = total - sum(counts.values())
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - int(exact[i][1])), i))
    for i in by_remainder[:left]:
        counts[exact[i][0]] += 1
    return counts


class Allocation:
    """The bucket ranges of every variant; answers which variant owns a bucket."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = tuple(sorted(segments))
        self._starts = [segment.start for segment in self.segments]

    @property
    def in_experiment(self) -> int:
        """Buckets that are in the experiment (they come first)."""
        return max((segment.end for segment in self.segments), default=0)

    def owner(self, bucket: int) -> str | None:
        """The variant that owns ``bucket``, None outside the experiment's traffic."""
        index = bisect.bisect_right(self._starts, bucket) - 1
        if index < 0:
            return None
        segment = self.segments[index]
        return segment.variant if segment.start <= bucket < segment.end else None

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for segment in self.segments:
            counts[segment.variant] = counts.get(segment.variant, 0) + segment.size
        return counts

    def to_json(self) -> list[list[int | str]]:
        return [[s.start, s.end, s.variant] for s in self.segments]

    @classmethod
    def from_json(cls, rows: Sequence[Sequence[int | str]]) -> Allocation:
        return cls([Segment(int(start), int(end), str(variant)) for start, end, variant in rows])


def allocate(
    weights: Sequence[tuple[str, float]], traffic: float, current: Allocation | None = None
) -> Allocation:
    """The allocation for these weights and traffic, moving as few buckets from ``current``
    as possible (a fresh one when ``current`` is None)."""
    total = round(traffic * BUCKETS)
    targets = target_counts(weights, total)
    owned: dict[str, list[Segment]] = {name: [] for name, _ in weights}
    free: list[tuple[int, int]] = []
    previous_total = 0
    if current is not None:
        previous_total = current.in_experiment
        for segment in current.segments:
            start, end = segment.start, min(segment.end, total)
            if start >= end:
                continue
            if segment.variant in owned:
                owned[segment.variant].append(Segment(start, end, segment.variant))
            else:
                free.append((start, end))
    if total > previous_total:
        free.append((previous_total, total))
    # Shrinking variants give up buckets from their highest ranges.
    for name, segments in owned.items():
        excess = sum(s.size for s in segments) - targets[name]
        while excess > 0:
            last = segments.pop()
            if last.size > excess:
                segments.append(Segment(last.start, last.end - excess, name))
                free.append((last.end - excess, last.end))
                excess = 0
            else:
                free.append((last.start, last.end))
                excess -= last.size
    # Growing variants take free buckets, lowest first.
    free.sort()
    for name, segments in owned.items():
        missing = targets[name] - sum(s.size for s in segments)
        while missing > 0:
            start, end = free.pop(0)
            taken = min(missing, end - start)
            segments.append(Segment(start, start + taken, name))
            if start + taken < end:
                free.insert(0, (start + taken, end))
            missing -= taken
    return Allocation(_merge([s for segments in owned.values() for s in segments]))


def _merge(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in sorted(segments):
        if merged and merged[-1].variant == segment.variant and merged[-1].end == segment.start:
            merged[-1] = Segment(merged[-1].start, segment.end, segment.variant)
        else:
            merged.append(segment)
    return merged
