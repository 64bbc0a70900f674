"""Turn what the user points ``--data`` at into a replay log.

MovieLens (``ml-1m.zip``, a folder of ``.dat`` files or the columnar ``.npz``):
a rating of at least ``click_rating`` is a click, the catalogue is every rated
movie, the cohort is the user's gender and age group. Generic logged bandit
feedback (CSV or Parquet): the action is the item, the context columns together
form the cohort, and the logged propensities, when present, are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cineamate.offline.logged import ColumnMap, read_logged
from cineamate.offline.movielens import CLICK_RATING, COHORT_LABELS, open_dataset, user_cohorts
from cineamate.offline.replay.log import ReplayLog

__all__ = ["LoadedLog", "load_log"]

FloatArray = npt.NDArray[np.float64]
_LOGGED_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class LoadedLog:
    """A replay log, the logging propensities when the data carries them, and its origin."""

    log: ReplayLog
    logged_propensities: FloatArray | None
    description: str


def load_log(
    path: Path,
    columns: ColumnMap | None = None,
    click_rating: int = CLICK_RATING,
    user_column: str | None = None,
) -> LoadedLog:
    """The log at ``path``: logged feedback by suffix, MovieLens otherwise."""
    if path.suffix.lower() in _LOGGED_SUFFIXES:
        return _from_logged(path, columns or ColumnMap(), user_column)
    return _from_movielens(path, click_rating)


def _from_movielens(path: Path, click_rating: int) -> LoadedLog:
    data = open_dataset(path)
    catalogue = np.unique(data.movie_ids).astype(np.int64)
    cohort_of_user = user_cohorts(data.users)
    user_rows = np.searchsorted(data.users.user_ids, data.user_ids)
    truth = None
    if data.truth is not None:
        columns = np.searchsorted(data.movies.movie_ids, catalogue)
        truth = data.truth.click_probability[:, columns]
    log = ReplayLog(
        times=data.timestamps.astype(np.int64),
        users=data.user_ids.astype(np.int64),
        items=data.movie_ids.astype(np.int64),
        rewards=(data.ratings >= click_rating).astype(np.float64),
        cohorts=np.asarray(cohort_of_user, dtype=np.int64)[user_rows],
        cohort_labels=tuple(COHORT_LABELS),
        catalogue=catalogue,
        truth=truth,
    )
    kind = "synthetic MovieLens 1M (planted truth)" if truth is not None else "MovieLens 1M"
    return LoadedLog(log, None, f"{kind}, a rating >= {click_rating} is a click")


def _from_logged(path: Path, columns: ColumnMap, user_column: str | None) -> LoadedLog:
    logged = read_logged(path, columns)
    order = np.argsort(logged.times, kind="stable")
    contexts = [np.asarray(logged.contexts[name])[order] for name in columns.context]
    cohorts, labels = _cells(contexts, columns.context, order.size)
    users = np.zeros(order.size, dtype=np.int64)
    if user_column is not None:
        users = np.unique(np.asarray(logged.contexts[user_column])[order], return_inverse=True)[1]
    log = ReplayLog(
        times=np.asarray(logged.times)[order].astype(np.int64),
        users=users.astype(np.int64),
        items=logged.actions[order],
        rewards=logged.rewards[order],
        cohorts=cohorts,
        cohort_labels=labels,
        catalogue=np.arange(logged.n_actions, dtype=np.int64),
    )
    propensities = None if logged.propensities is None else logged.propensities[order]
    return LoadedLog(log, propensities, f"logged bandit feedback from {path.name}")


def _cells(
    contexts: list[npt.NDArray[np.generic]], names: tuple[str, ...], size: int
) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """One cohort per combination of the context columns' values."""
    if not contexts:
        return np.zeros(size, dtype=np.int64), ("all",)
    codes = []
    values = []
    for column in contexts:
        unique, code = np.unique(column.astype(str), return_inverse=True)
        codes.append(code)
        values.append(unique)
    combined, cohorts = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    labels = tuple(
        ",".join(
            f"{name}={values[j][code]}"
            for j, (name, code) in enumerate(zip(names, row, strict=True))
        )
        for row in combined
    )
    return cohorts.reshape(-1).astype(np.int64), labels


def _pairs(names: tuple[str, ...], codes: npt.NDArray[np.int64]) -> list[tuple[str, int]]:
    return list(zip(names, codes.tolist(), strict=True))
