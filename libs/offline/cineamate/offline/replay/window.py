"""Which stretch of the log to replay: ``all``, ``START:END`` or ``auto``.

``auto`` picks the window of ``days`` consecutive days that maximises
*events x distinct users*, among the windows whose events cover at least
``min_coverage`` of the catalogue: many events for tight intervals, many users
so a few heavy raters cannot dominate, and enough of the catalogue that the
policies have a real choice. Distinct users (and items) per window are counted
for every start day at once: each (user, day) of activity makes the user present
in the windows starting in the ``days`` days up to it, and the overlapping spans
of one user are merged before they are counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import InvalidInput
from cineamate.offline.replay.log import DAY_SECONDS, ReplayLog

__all__ = ["DEFAULT_MIN_COVERAGE", "DEFAULT_WINDOW_DAYS", "Window", "choose_window"]

DEFAULT_WINDOW_DAYS = 14
DEFAULT_MIN_COVERAGE = 0.5

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Window:
    """A half-open span of event time, in seconds, and why it was chosen."""

    start: int
    end: int
    reason: str

    def label(self) -> str:
        return f"{_date(self.start)} to {_date(self.end - 1)}"


def choose_window(
    log: ReplayLog,
    spec: str,
    days: int = DEFAULT_WINDOW_DAYS,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> Window:
    """The window ``spec`` names: ``all``, ``auto`` or ``YYYY-MM-DD:YYYY-MM-DD`` (end exclusive)."""
    if len(log) == 0:
        raise InvalidInput("the log has no events", field="data")
    if spec == "all":
        return Window(int(log.times[0]), int(log.times[-1]) + 1, "the whole log")
    if spec == "auto":
        return _best_window(log, days, min_coverage)
    start_text, separator, end_text = spec.partition(":")
    if not separator:
        raise InvalidInput("window must be all, auto or START:END (dates)", field="window")
    start, end = _parse_day(start_text), _parse_day(end_text)
    if end <= start:
        raise InvalidInput("window end must be after its start", field="window")
    return Window(start, end, "as given")


def _best_window(log: ReplayLog, days: int, min_coverage: float) -> Window:
    day = log.days
    first = int(day[0])
    day = day - first
    n_days = int(day[-1]) + 1
    starts = np.arange(n_days)
    ends = np.minimum(starts + days, n_days)
    cumulative = np.concatenate([[0], np.cumsum(np.bincount(day, minlength=n_days))])
    events = cumulative[ends] - cumulative[starts]
    users = _present_per_window(log.users, day, n_days, days)
    coverage = _present_per_window(log.items, day, n_days, days) / log.catalogue.size
    objective = events.astype(np.float64) * users
    eligible = coverage >= min_coverage
    if not eligible.any():
        raise InvalidInput(
            f"no {days}-day window covers {min_coverage:.0%} of the catalogue "
            f"(best {coverage.max():.1%}); lower --min-coverage",
            field="min_coverage",
        )
    best = int(np.argmax(np.where(eligible, objective, -1.0)))
    start = (first + best) * DAY_SECONDS
    reason = (
        f"the {days}-day window with the most events x distinct users "
        f"({int(events[best]):,} events, {int(users[best]):,} users, "
        f"{coverage[best]:.0%} of the catalogue) among {int(eligible.sum())} windows "
        f"covering at least {min_coverage:.0%} of the catalogue"
    )
    return Window(start, start + days * DAY_SECONDS, reason)


def _present_per_window(keys: IntArray, day: IntArray, n_days: int, days: int) -> IntArray:
    """For each start day s, the number of distinct keys with an event in [s, s + days)."""
    # Sorted by key, then day.
    pairs = np.unique((keys - keys.min()) * (n_days + 1) + day)
    key, active = pairs // (n_days + 1), pairs % (n_days + 1)
    # A key is present for start days (active - days, active]; merge overlapping spans per key.
    span_start = np.maximum(active - days + 1, 0)
    new_run = np.ones(key.size, dtype=bool)
    new_run[1:] = (key[1:] != key[:-1]) | (span_start[1:] > active[:-1])
    run_id = np.cumsum(new_run) - 1
    run_start = span_start[new_run]
    run_end = np.zeros(run_start.size, dtype=np.int64)
    np.maximum.at(run_end, run_id, active + 1)
    delta = np.zeros(n_days + 1, dtype=np.int64)
    np.add.at(delta, run_start, 1)
    np.add.at(delta, np.minimum(run_end, n_days), -1)
    return np.cumsum(delta)[:n_days]


def _parse_day(text: str) -> int:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"not a date (YYYY-MM-DD): {text!r}", field="window") from exc
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _date(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date().isoformat()
