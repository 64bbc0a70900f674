"""Cohorts of users and the planted ground truth of synthetic data.

A cohort is gender x age group of users.dat: 2 x 7 = 14 cohorts, labelled
``"F:18-24"``. The synthetic generator plants, for every cohort and listed
movie, the probability that a rating is a click (4 stars or more); the replay
measures regret and estimator bias against it. Real MovieLens has no truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cineamate.common.errors import InvalidInput
from cineamate.offline.movielens._npz import Arrays, load_arrays, save_arrays
from cineamate.offline.movielens.format import AGE_GROUPS, Users

__all__ = [
    "CLICK_RATING",
    "COHORT_LABELS",
    "TRUTH_FILE",
    "GroundTruth",
    "read_truth",
    "user_cohorts",
    "write_truth",
]

TRUTH_FILE = "truth.npz"
# A rating of this many stars or more is a click.
CLICK_RATING = 4

_GENDERS = ("F", "M")
_AGES = tuple(AGE_GROUPS)
COHORT_LABELS: tuple[str, ...] = tuple(
    f"{gender}:{AGE_GROUPS[age]}" for gender in _GENDERS for age in _AGES
)


@dataclass(frozen=True)
class GroundTruth:
    """Each listed movie's true click probability per cohort.

    >>> truth.click_probability[user_cohorts(data.users), data.movies.index_of(1)]  # doctest: +SKIP
    array([0.61, 0.58, ...])
    """

    cohort_labels: tuple[str, ...]
    click_probability: NDArray[np.float64]  # (n_cohorts, n_movies), columns as movies.movie_ids


def user_cohorts(users: Users) -> NDArray[np.int64]:
    """The cohort index of every user (row of ``GroundTruth.click_probability``)."""
    gender = np.select([users.genders == "F", users.genders == "M"], [0, 1], -1)
    age_index = np.full(max(_AGES) + 1, -1)
    age_index[list(_AGES)] = np.arange(len(_AGES))
    ages = users.ages.astype(np.int64)
    age = np.where((ages >= 0) & (ages < len(age_index)), age_index[ages % len(age_index)], -1)
    known = (gender >= 0) & (age >= 0)
    if not known.all():
        row = int(np.argmin(known))
        raise InvalidInput(
            f"user {users.user_ids[row]} has gender {users.genders[row]!r} and age "
            f"{users.ages[row]}, which belong to no cohort",
            field="users",
        )
    cohorts: NDArray[np.int64] = (gender * len(_AGES) + age).astype(np.int64)
    return cohorts


def write_truth(truth: GroundTruth, movie_ids: NDArray[np.int32], path: Path) -> None:
    """``truth`` as an .npz, with the movie ids its columns belong to."""
    save_arrays(truth_arrays(truth, movie_ids), path)


def truth_arrays(truth: GroundTruth, movie_ids: NDArray[np.int32]) -> Arrays:
    """The arrays that store ``truth`` (shared by truth.npz and the columnar file)."""
    return {
        "truth_cohort_labels": np.array(truth.cohort_labels, dtype=np.str_),
        "truth_click_probability": truth.click_probability,
        "truth_movie_ids": movie_ids,
    }


def read_truth(path: Path, movie_ids: NDArray[np.int32]) -> GroundTruth:
    """truth.npz, checked against the listed movies it must describe."""
    return truth_from_arrays(load_arrays(path, "a ground-truth file"), movie_ids, str(path))


def truth_from_arrays(arrays: Arrays, movie_ids: NDArray[np.int32], source: str) -> GroundTruth:
    """The truth stored by ``truth_arrays``; its movies must be ``movie_ids``."""
    try:
        labels = tuple(str(label) for label in arrays["truth_cohort_labels"])
        probability = np.asarray(arrays["truth_click_probability"], dtype=np.float64)
        truth_movie_ids = np.asarray(arrays["truth_movie_ids"])
    except KeyError as exc:
        raise InvalidInput(f"{source}: no {exc.args[0]}", field="truth") from None
    if not np.array_equal(truth_movie_ids, movie_ids):
        raise InvalidInput(f"{source}: its movies are not those of movies.dat", field="truth")
    if probability.shape != (len(labels), len(movie_ids)):
        raise InvalidInput(
            f"{source}: click_probability has shape {probability.shape}, expected "
            f"{(len(labels), len(movie_ids))}",
            field="truth",
        )
    return GroundTruth(cohort_labels=labels, click_probability=probability)
