"""Who sends the load: users with heavy-tailed activity and the cohort they belong to.

Real traffic is not uniform over users: a few come back all the time and most
are seen once or twice. A population draws the user of each request in
proportion to an activity weight, and every user carries cohort attributes,
sent as query parameters so the platform can slice its figures by them. Built
from MovieLens (real or synthetic), the weights are each user's number of
ratings (a long tail: median 97, maximum 2,295 in ML-1M) and the cohorts are
gender x age group, the rows of the synthetic set's planted truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt

from cineamate.offline.movielens import COHORT_LABELS, MovieLens, user_cohorts

__all__ = ["Population"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Population:
    """Users, their activity weights and their cohorts.

    >>> users = Population(("u1", "u2"), np.array([9.0, 1.0]), np.array([0, 1]), ("F:1", "M:1"))
    >>> users.query(0)
    'user_id=u1&gender=F&age=1'
    >>> np.bincount(users.draw(1_000, np.random.default_rng(0))).tolist()
    [904, 96]
    """

    user_ids: tuple[str, ...]
    activity: FloatArray
    cohorts: IntArray  # per user, an index into cohort_labels
    cohort_labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.user_ids:
            raise ValueError("a population needs at least one user")
        if (
            self.activity.shape != (len(self.user_ids),)
            or self.cohorts.shape != self.activity.shape
        ):
            raise ValueError("activity and cohorts need one value per user")
        if (self.activity < 0).any() or not self.activity.sum() > 0:
            raise ValueError("activity weights must be non-negative with a positive sum")

    @classmethod
    def from_movielens(cls, data: MovieLens) -> Population:
        """The data set's users, weighted by their number of ratings, in their cohorts."""
        users = data.users
        rows = np.searchsorted(users.user_ids, data.user_ids)
        activity = np.bincount(rows, minlength=len(users.user_ids)).astype(np.float64)
        return cls(
            tuple(f"u{user_id}" for user_id in users.user_ids.tolist()),
            activity,
            user_cohorts(users),
            COHORT_LABELS,
        )

    def __len__(self) -> int:
        return len(self.user_ids)

    def draw(self, count: int, rng: np.random.Generator) -> IntArray:
        """``count`` user indices, each drawn in proportion to its activity."""
        cumulative = np.cumsum(self.activity)
        drawn: IntArray = np.searchsorted(
            cumulative, rng.random(count) * cumulative[-1], side="right"
        ).astype(np.int64)
        return np.minimum(drawn, len(self.user_ids) - 1)

    def attributes(self, cohort: int) -> dict[str, str]:
        """A cohort label as query attributes: ``"F:25-34"`` is gender F, age 25-34."""
        gender, separator, age = self.cohort_labels[cohort].partition(":")
        return {"gender": gender, "age": age} if separator else {"cohort": gender}

    def query(self, user: int) -> str:
        """The user's id and cohort attributes as a query string (without ``?``)."""
        attributes = self.attributes(int(self.cohorts[user]))
        return urlencode({"user_id": self.user_ids[user], **attributes})
