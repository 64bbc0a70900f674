"""The planted click model: how likely a user is to click an item she is shown.

A shown item is clicked with probability ``attention * p[cohort, item]``,
independently of the rest of the slate, where ``p`` is the synthetic MovieLens
truth (the probability that a user of the cohort rates the movie 4 stars or
more) and ``attention`` the share of shown items a user looks at. Since the
load generator knows ``p``, it knows the expected CTR of every slate a variant
served, and that of the best possible slate (the cohort's top items), so a
run says which variant is truly best, not only which one looked best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cineamate.offline.movielens import MovieLens

__all__ = ["DEFAULT_ATTENTION", "ClickModel"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# About 10% of shown items clicked on average (the truth's mean is about 0.5).
DEFAULT_ATTENTION = 0.2


@dataclass(frozen=True)
class ClickModel:
    """Click probabilities per cohort and item; items outside the truth get ``unknown``.

    >>> model = ClickModel(np.array([7, 9]), np.array([[0.5, 1.0]]), attention=0.5)
    >>> model.probabilities(0, [9, 7, 8]).tolist()
    [0.5, 0.25, 0.0]
    >>> model.best_ctr(0, 1)
    0.5
    """

    item_ids: IntArray  # sorted; the columns of ``probability``
    probability: FloatArray  # (cohorts, items), before attention
    attention: float = DEFAULT_ATTENTION
    unknown: float = 0.0
    _best: dict[int, FloatArray] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.attention <= 1.0:
            raise ValueError(f"attention must lie in (0, 1], not {self.attention!r}")
        if self.probability.shape[1:] != self.item_ids.shape:
            raise ValueError("the truth needs one column per item")
        if (np.diff(self.item_ids) <= 0).any():
            raise ValueError("item ids must be sorted and unique")

    @classmethod
    def from_movielens(cls, data: MovieLens, attention: float = DEFAULT_ATTENTION) -> ClickModel:
        """The planted truth of a synthetic set (real MovieLens has none)."""
        if data.truth is None:
            raise ValueError("this data set has no planted truth; use the synthetic set")
        item_ids = data.movies.movie_ids.astype(np.int64)
        order = np.argsort(item_ids)
        return cls(item_ids[order], data.truth.click_probability[:, order], attention)

    def probabilities(self, cohort: int, item_ids: Sequence[int]) -> FloatArray:
        """The click probability of each item shown to a user of ``cohort``."""
        ids = np.asarray(item_ids, dtype=np.int64)
        columns = np.minimum(np.searchsorted(self.item_ids, ids), self.item_ids.size - 1)
        known = self.item_ids[columns] == ids
        planted = np.where(known, self.probability[cohort, columns], self.unknown)
        result: FloatArray = self.attention * planted
        return result

    def best_ctr(self, cohort: int, k: int) -> float:
        """The expected CTR of the best slate of ``k`` items for ``cohort`` (the oracle)."""
        if k not in self._best:
            top = -np.sort(-self.probability, axis=1)[:, :k]
            self._best[k] = self.attention * top.mean(axis=1)
        return float(self._best[k][cohort])
