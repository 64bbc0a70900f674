"""The MovieLens data set in memory, and its columnar file.

``MovieLens`` is what the replay reads: one entry per rating in event-time
order, with the movies, the users and, for synthetic data, the planted truth.
Parsing the ``.dat`` files takes seconds; the columnar ``.npz`` (uncompressed
numpy arrays) loads in a fraction of one, so ``cineamate dataset load`` writes
it once and the replay opens that.

    >>> data = open_dataset(Path(".cineamate/datasets/ml-1m.zip"))  # doctest: +SKIP
    >>> len(data), data.movies.movie_ids.size, data.users.user_ids.size
    (1000209, 3883, 6040)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cineamate.common.errors import InvalidInput
from cineamate.offline.movielens._npz import Arrays, load_arrays, save_arrays
from cineamate.offline.movielens.format import (
    RATINGS_FILE,
    Movies,
    Ratings,
    Users,
    read_files,
)
from cineamate.offline.movielens.truth import (
    TRUTH_FILE,
    GroundTruth,
    read_truth,
    truth_arrays,
    truth_from_arrays,
)

__all__ = [
    "COLUMNAR_SUFFIX",
    "MovieLens",
    "from_tables",
    "open_dataset",
    "read_columnar",
    "write_columnar",
]

COLUMNAR_SUFFIX = ".npz"
# Bumped when the arrays stored in the columnar file change meaning.
_COLUMNAR_VERSION = 1


@dataclass(frozen=True)
class MovieLens:
    """Ratings sorted by (timestamp, user_id, movie_id), with the movies, users and truth.

    >>> data = open_dataset(Path("synthetic"))  # doctest: +SKIP
    >>> clicks = data.ratings >= 4
    """

    user_ids: NDArray[np.int32]
    movie_ids: NDArray[np.int32]
    ratings: NDArray[np.int8]
    timestamps: NDArray[np.int64]
    movies: Movies
    users: Users
    truth: GroundTruth | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    def rated_movie_ids(self) -> NDArray[np.int32]:
        """The ids of the movies with at least one rating, sorted."""
        rated: NDArray[np.int32] = np.unique(self.movie_ids)
        return rated

    def as_ratings(self) -> Ratings:
        """The rating columns, in this data set's order."""
        return Ratings(self.user_ids, self.movie_ids, self.ratings, self.timestamps)


def from_tables(
    ratings: Ratings, movies: Movies, users: Users, truth: GroundTruth | None = None
) -> MovieLens:
    """A data set from the three files' contents: sorted, and checked for consistency."""
    _refuse_unknown(ratings.user_ids, users.user_ids, "user")
    _refuse_unknown(ratings.movie_ids, movies.movie_ids, "movie")
    order = np.lexsort((ratings.movie_ids, ratings.user_ids, ratings.timestamps))
    _refuse_repeated_pairs(ratings, order)
    return MovieLens(
        user_ids=ratings.user_ids[order],
        movie_ids=ratings.movie_ids[order],
        ratings=ratings.ratings[order],
        timestamps=ratings.timestamps[order],
        movies=movies,
        users=users,
        truth=truth,
    )


def _refuse_unknown(ids: NDArray[np.int32], known: NDArray[np.int32], what: str) -> None:
    row = np.searchsorted(known, ids).clip(max=max(len(known) - 1, 0))
    missing = known[row] != ids if len(known) else np.ones(len(ids), dtype=bool)
    if missing.any():
        line = int(np.argmax(missing))
        raise InvalidInput(
            f"{RATINGS_FILE} line {line + 1}: {what} {ids[line]} is not in {what}s.dat",
            field=RATINGS_FILE,
        )


def _refuse_repeated_pairs(ratings: Ratings, order: NDArray[np.intp]) -> None:
    pairs = ratings.user_ids.astype(np.int64) << 32 | ratings.movie_ids.astype(np.int64)
    by_pair = np.argsort(pairs, kind="stable")
    repeated = np.flatnonzero(pairs[by_pair][1:] == pairs[by_pair][:-1])
    if repeated.size:
        first, again = sorted(int(by_pair[i]) for i in (repeated[0], repeated[0] + 1))
        raise InvalidInput(
            f"{RATINGS_FILE} line {again + 1}: user {ratings.user_ids[again]} rated movie "
            f"{ratings.movie_ids[again]} already at line {first + 1}",
            field=RATINGS_FILE,
        )


def open_dataset(path: Path) -> MovieLens:
    """``ml-1m.zip``, a folder of the .dat files (with truth.npz if there), or a columnar .npz."""
    if path.suffix == COLUMNAR_SUFFIX and path.is_file():
        return read_columnar(path)
    ratings, movies, users = read_files(path)
    truth = None
    if path.is_dir() and (path / TRUTH_FILE).is_file():
        truth = read_truth(path / TRUTH_FILE, movies.movie_ids)
    return from_tables(ratings, movies, users, truth)


def write_columnar(data: MovieLens, path: Path) -> None:
    """``data`` as an uncompressed .npz of its arrays (fast to load, no pickles)."""
    arrays: Arrays = {
        "version": np.array(_COLUMNAR_VERSION),
        "user_ids": data.user_ids,
        "movie_ids": data.movie_ids,
        "ratings": data.ratings,
        "timestamps": data.timestamps,
        "movies_movie_ids": data.movies.movie_ids,
        "movies_titles": data.movies.titles,
        "movies_genres": data.movies.genres,
        "users_user_ids": data.users.user_ids,
        "users_genders": data.users.genders,
        "users_ages": data.users.ages,
        "users_occupations": data.users.occupations,
        "users_zip_codes": data.users.zip_codes,
    }
    if data.truth is not None:
        arrays.update(truth_arrays(data.truth, data.movies.movie_ids))
    save_arrays(arrays, path)


def read_columnar(path: Path) -> MovieLens:
    """A data set written by ``write_columnar``."""
    arrays = load_arrays(path, "a columnar MovieLens file")
    version = int(np.asarray(arrays.get("version", -1)))
    if version != _COLUMNAR_VERSION:
        raise InvalidInput(
            f"{path} has columnar version {version}, expected {_COLUMNAR_VERSION}; "
            "write it again with `cineamate dataset load`",
            field="path",
        )
    movies = Movies(
        movie_ids=_typed(arrays, "movies_movie_ids", np.int32),
        titles=_typed(arrays, "movies_titles", np.str_),
        genres=_typed(arrays, "movies_genres", np.str_),
    )
    users = Users(
        user_ids=_typed(arrays, "users_user_ids", np.int32),
        genders=_typed(arrays, "users_genders", np.str_),
        ages=_typed(arrays, "users_ages", np.int8),
        occupations=_typed(arrays, "users_occupations", np.int8),
        zip_codes=_typed(arrays, "users_zip_codes", np.str_),
    )
    truth = None
    if "truth_click_probability" in arrays:
        truth = truth_from_arrays(arrays, movies.movie_ids, str(path))
    return MovieLens(
        user_ids=_typed(arrays, "user_ids", np.int32),
        movie_ids=_typed(arrays, "movie_ids", np.int32),
        ratings=_typed(arrays, "ratings", np.int8),
        timestamps=_typed(arrays, "timestamps", np.int64),
        movies=movies,
        users=users,
        truth=truth,
    )


def _typed(arrays: Arrays, name: str, dtype: type) -> NDArray[Any]:
    if name not in arrays:
        raise InvalidInput(f"the columnar file has no {name!r}", field="path")
    array = arrays[name]
    if not np.issubdtype(array.dtype, dtype):
        raise InvalidInput(f"{name!r} has type {array.dtype}, expected {dtype.__name__}")
    return array
