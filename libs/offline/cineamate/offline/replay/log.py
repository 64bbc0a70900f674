"""The stream a replay walks: one logged (time, user, item, reward) event per row.

Built from MovieLens (a rating of at least the threshold is a click) or from any
logged bandit feedback. Arms are item ids; the catalogue is every item the
policies may recommend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import InvalidInput

__all__ = ["DAY_SECONDS", "ReplayLog"]

DAY_SECONDS = 86_400

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ReplayLog:
    """Events in time order, with each user's cohort and, for synthetic data, the truth.

    >>> log = ReplayLog.from_arrays(times=[0, 5], users=[1, 2], items=[10, 20], rewards=[1, 0])
    >>> len(log), log.catalogue.tolist()
    (2, [10, 20])
    """

    times: IntArray
    users: IntArray
    items: IntArray
    rewards: FloatArray
    cohorts: IntArray
    cohort_labels: tuple[str, ...]
    catalogue: IntArray
    # True click probability per (cohort, catalogue item), when the data was planted.
    truth: FloatArray | None = None

    def __post_init__(self) -> None:
        n = self.times.size
        for name in ("users", "items", "rewards", "cohorts"):
            if getattr(self, name).shape != (n,):
                raise InvalidInput(f"{name} must have one entry per event", field=name)
        if n and np.any(self.times[1:] < self.times[:-1]):
            raise InvalidInput("events must be in time order", field="times")
        if self.truth is not None and self.truth.shape != (
            len(self.cohort_labels),
            self.catalogue.size,
        ):
            raise InvalidInput("truth must be (cohorts, catalogue items)", field="truth")

    @classmethod
    def from_arrays(
        cls,
        *,
        times: npt.ArrayLike,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        rewards: npt.ArrayLike,
        cohorts: npt.ArrayLike | None = None,
        cohort_labels: tuple[str, ...] = ("all",),
        catalogue: npt.ArrayLike | None = None,
        truth: FloatArray | None = None,
    ) -> ReplayLog:
        """A log from plain arrays; the catalogue defaults to the items seen."""
        item_ids = np.asarray(items, dtype=np.int64)
        n = item_ids.size
        return cls(
            times=np.asarray(times, dtype=np.int64),
            users=np.asarray(users, dtype=np.int64),
            items=item_ids,
            rewards=np.asarray(rewards, dtype=np.float64),
            cohorts=np.zeros(n, np.int64) if cohorts is None else np.asarray(cohorts, np.int64),
            cohort_labels=cohort_labels,
            catalogue=np.unique(item_ids if catalogue is None else np.asarray(catalogue)),
            truth=truth,
        )

    def __len__(self) -> int:
        return int(self.times.size)

    @property
    def days(self) -> IntArray:
        """Day number of each event (days since the Unix epoch)."""
        return self.times // DAY_SECONDS

    def item_positions(self) -> IntArray:
        """Each event's item as a position in the catalogue."""
        return np.searchsorted(self.catalogue, self.items)

    def between(self, start: int, end: int) -> ReplayLog:
        """The events with ``start <= time < end`` (seconds), over the same catalogue."""
        low, high = np.searchsorted(self.times, [start, end])
        return self.rows(slice(int(low), int(high)))

    def rows(self, selection: slice | npt.NDArray[np.bool_]) -> ReplayLog:
        """A contiguous run of events, or those a mask selects, over the same catalogue."""
        return self._take(selection, self.catalogue, self.truth)

    def restricted_to(self, items: IntArray) -> ReplayLog:
        """Only the events on ``items``, which become the catalogue (for ``--top-items``)."""
        catalogue = np.unique(items)
        truth = None
        if self.truth is not None:
            truth = self.truth[:, np.searchsorted(self.catalogue, catalogue)]
        return self._take(np.isin(self.items, catalogue), catalogue, truth)

    def _take(
        self,
        selection: slice | npt.NDArray[np.bool_],
        catalogue: IntArray,
        truth: FloatArray | None,
    ) -> ReplayLog:
        return ReplayLog(
            times=self.times[selection],
            users=self.users[selection],
            items=self.items[selection],
            rewards=self.rewards[selection],
            cohorts=self.cohorts[selection],
            cohort_labels=self.cohort_labels,
            catalogue=catalogue,
            truth=truth,
        )
