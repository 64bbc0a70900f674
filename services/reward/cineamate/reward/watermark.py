"""Event-time watermark of one join partition, free of I/O.

A join partition reads two inputs (the same partition of ``serves`` and of
``clicks``). Each input's clock is the latest event time it has shown. The
watermark is the earliest clock of the active inputs minus the allowed
lateness: no window closes while an input that is still delivering may bring
events for it. An input that has delivered everything the broker holds
(caught up) and nothing for ``idle_after`` seconds of wall time is idle and
stops holding the watermark back; an input with a backlog never is, however
long it waits for its turn. When every input is idle the watermark moves on
with the wall clock from the latest event seen, so the last windows of a
quiet stream still close. The watermark never goes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["InputClock", "watermark"]

MICROS = 1_000_000


@dataclass(slots=True)
class InputClock:
    """One input of a join partition: its latest event time and when it last delivered."""

    latest_event: int | None
    last_delivery: float
    caught_up: bool = False

    def observe(self, event_time: int, now: float) -> None:
        self.last_delivery = now
        if self.latest_event is None or event_time > self.latest_event:
            self.latest_event = event_time


def watermark(
    clocks: Sequence[InputClock],
    *,
    now: float,
    previous: int,
    idle_after: float,
    allowed_lateness: int,
) -> int:
    """The watermark (event-time microseconds) at wall time ``now`` (seconds)."""
    active = [
        clock for clock in clocks if now - clock.last_delivery < idle_after or not clock.caught_up
    ]
    if active:
        if any(clock.latest_event is None for clock in active):
            return previous  # an input that may still deliver has shown nothing yet
        candidate = min(clock.latest_event for clock in active if clock.latest_event is not None)
    else:
        seen = [clock for clock in clocks if clock.latest_event is not None]
        if not seen:
            return previous
        latest = max(clock.latest_event for clock in seen if clock.latest_event is not None)
        quiet_for = now - max(clock.last_delivery for clock in clocks) - idle_after
        candidate = latest + int(max(quiet_for, 0.0) * MICROS)
    return max(previous, candidate - allowed_lateness)
