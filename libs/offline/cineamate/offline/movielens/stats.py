"""The figures that describe a MovieLens data set, and ML-1M's own.

The loader checks a data set's counts against ML-1M's; the generator's tests
and its README compare the rest (activity, popularity, ratings, time,
demographics) with the published figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from cineamate.common.errors import InvalidInput
from cineamate.offline.movielens.dataset import MovieLens
from cineamate.offline.movielens.format import AGE_GROUPS

__all__ = ["ML_1M", "Counts", "Statistics", "check_counts", "counts_of", "statistics_of"]


@dataclass(frozen=True)
class Counts:
    """How many ratings, users, rated movies and listed movies a data set holds."""

    ratings: int
    users: int
    rated_movies: int
    listed_movies: int

    def __str__(self) -> str:
        return (
            f"{self.ratings:,} ratings, {self.users:,} users, {self.rated_movies:,} rated of "
            f"{self.listed_movies:,} listed movies"
        )


ML_1M = Counts(ratings=1_000_209, users=6_040, rated_movies=3_706, listed_movies=3_883)


def check_counts(counts: Counts, expected: Counts = ML_1M) -> None:
    """Raise InvalidInput naming both when ``counts`` are not ``expected``."""
    if counts != expected:
        raise InvalidInput(
            f"the data set has {counts}; MovieLens 1M has {expected} "
            "(--any-size accepts other sizes, such as scaled synthetic data)",
            code="invalid.dataset_size",
            field="path",
        )


def counts_of(data: MovieLens) -> Counts:
    """The counts of ``data``."""
    return Counts(
        ratings=len(data),
        users=len(data.users),
        rated_movies=len(data.rated_movie_ids()),
        listed_movies=len(data.movies),
    )


@dataclass(frozen=True)
class Statistics:
    """The shape of a data set: what the synthetic generator is calibrated to."""

    counts: Counts
    min_user_ratings: int
    median_user_ratings: float
    max_user_ratings: int
    max_movie_ratings: int
    median_movie_ratings: float
    movies_with_one_rating: int
    rating_shares: dict[int, float]  # stars -> share of ratings
    year_shares: dict[int, float]  # calendar year (UTC) -> share of ratings
    first_rating: datetime
    last_rating: datetime
    male_share: float
    users_by_age: dict[int, int]

    def lines(self) -> list[str]:
        """The figures as short lines of text."""
        stars = ", ".join(f"{k}: {v:.1%}" for k, v in self.rating_shares.items())
        years = ", ".join(f"{k}: {v:.1%}" for k, v in self.year_shares.items())
        ages = ", ".join(f"{k}: {v:,}" for k, v in self.users_by_age.items())
        return [
            str(self.counts),
            f"ratings per user: min {self.min_user_ratings}, median "
            f"{self.median_user_ratings:g}, max {self.max_user_ratings:,}",
            f"ratings per rated movie: median {self.median_movie_ratings:g}, max "
            f"{self.max_movie_ratings:,}, {self.movies_with_one_rating} with one rating",
            f"stars: {stars}",
            f"years: {years}",
            f"from {self.first_rating:%Y-%m-%d %H:%M:%S} to "
            f"{self.last_rating:%Y-%m-%d %H:%M:%S} UTC",
            f"users: {self.male_share:.1%} male; by age code {ages}",
        ]


def statistics_of(data: MovieLens) -> Statistics:
    """The figures of ``data`` (vectorised; well under a second at full size)."""
    per_user = np.bincount(
        np.searchsorted(data.users.user_ids, data.user_ids), minlength=len(data.users)
    )
    per_movie = np.unique(data.movie_ids, return_counts=True)[1]
    stars = np.bincount(data.ratings, minlength=6)[1:] / max(len(data), 1)
    years = data.timestamps.astype("datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
    year_values, year_counts = np.unique(years, return_counts=True)
    ages = {age: int((data.users.ages == age).sum()) for age in AGE_GROUPS}
    return Statistics(
        counts=counts_of(data),
        min_user_ratings=int(per_user.min()) if per_user.size else 0,
        median_user_ratings=float(np.median(per_user)),
        max_user_ratings=int(per_user.max(initial=0)),
        max_movie_ratings=int(per_movie.max(initial=0)),
        median_movie_ratings=float(np.median(per_movie)),
        movies_with_one_rating=int((per_movie == 1).sum()),
        rating_shares={star: float(share) for star, share in enumerate(stars, start=1)},
        year_shares={
            int(year): float(count / len(data))
            for year, count in zip(year_values, year_counts, strict=True)
        },
        first_rating=datetime.fromtimestamp(int(data.timestamps.min()), UTC),
        last_rating=datetime.fromtimestamp(int(data.timestamps.max()), UTC),
        male_share=float((data.users.genders == "M").mean()),
        users_by_age=ages,
    )
