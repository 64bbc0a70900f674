"""Load a MovieLens data set into PostgreSQL and make it a platform catalogue.

The three ``movielens_*`` tables (migration 0007) are replaced whole in one
transaction, so loading twice leaves one copy and a reader never sees half a
load. Rows go in by binary COPY (``copy_records_to_table``), the ratings in
chunks so a progress bar can follow. Every listed movie, with its title, is
put into ``catalogue_items`` under the catalogue's name, so an experiment can
say ``catalogue: movielens``.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from cineamate.common.errors import DependencyUnavailable
from cineamate.offline.movielens.dataset import MovieLens
from cineamate.offline.movielens.stats import Counts, counts_of

__all__ = ["DEFAULT_CATALOGUE", "catalogue_size", "load_catalogue", "load_into_postgres"]

DEFAULT_CATALOGUE = "movielens"

_CHUNK = 100_000
_TABLES = ("movielens_ratings", "movielens_users", "movielens_movies")


async def load_into_postgres(
    data: MovieLens,
    database_url: str,
    *,
    catalogue: str = DEFAULT_CATALOGUE,
    progress: bool = False,
) -> Counts:
    """Replace the MovieLens tables with ``data`` and the catalogue with its movies."""
    connection = await _connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute(f"TRUNCATE {', '.join(_TABLES)}")
            await _copy_movies(connection, data)
            await _copy_users(connection, data)
            await _copy_ratings(connection, data, progress)
            await _replace_catalogue(connection, data, catalogue)
    finally:
        await connection.close()
    return counts_of(data)


async def load_catalogue(
    data: MovieLens, database_url: str, *, catalogue: str = DEFAULT_CATALOGUE
) -> int:
    """Make ``data``'s movies the catalogue, without the rating tables; the movies loaded."""
    connection = await _connect(database_url)
    try:
        async with connection.transaction():
            await _replace_catalogue(connection, data, catalogue)
    finally:
        await connection.close()
    return len(data.movies.movie_ids)


async def catalogue_size(database_url: str, catalogue: str = DEFAULT_CATALOGUE) -> int:
    """How many items the catalogue holds (0 when it was never loaded)."""
    connection = await _connect(database_url)
    try:
        size: int = await connection.fetchval(
            "SELECT count(*) FROM catalogue_items WHERE catalogue = $1", catalogue
        )
    finally:
        await connection.close()
    return size


async def _connect(database_url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DependencyUnavailable(f"postgres: {exc}", code="unavailable.postgres") from exc


async def _copy_movies(connection: asyncpg.Connection, data: MovieLens) -> None:
    records = (
        (movie_id, title, genres.split("|")) for movie_id, title, genres in data.movies.rows()
    )
    await connection.copy_records_to_table(
        "movielens_movies", records=records, columns=("movie_id", "title", "genres")
    )


async def _copy_users(connection: asyncpg.Connection, data: MovieLens) -> None:
    await connection.copy_records_to_table(
        "movielens_users",
        records=data.users.rows(),
        columns=("user_id", "gender", "age", "occupation", "zip_code"),
    )


async def _copy_ratings(connection: asyncpg.Connection, data: MovieLens, progress: bool) -> None:
    with tqdm(
        total=len(data), desc="ratings", unit="row", unit_scale=True, disable=not progress
    ) as bar:
        for rows in _chunks(len(data)):
            records = zip(
                _values(data.user_ids[rows]),
                _values(data.movie_ids[rows]),
                _values(data.ratings[rows]),
                _values(data.timestamps[rows]),
                strict=True,
            )
            await connection.copy_records_to_table(
                "movielens_ratings",
                records=records,
                columns=("user_id", "movie_id", "rating", "rated_unix"),
            )
            bar.update(rows.stop - rows.start)


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, _CHUNK):
        yield slice(start, min(start + _CHUNK, n))


def _values(array: NDArray[np.integer]) -> list[int]:
    values: list[int] = array.tolist()
    return values


async def _replace_catalogue(
    connection: asyncpg.Connection, data: MovieLens, catalogue: str
) -> None:
    item_ids = data.movies.movie_ids.astype(np.int64).tolist()
    await connection.execute(
        """
        INSERT INTO catalogue_items (catalogue, item_id, title)
        SELECT $1, item_id, title FROM unnest($2::bigint[], $3::text[]) AS t (item_id, title)
        ON CONFLICT (catalogue, item_id) DO UPDATE SET title = EXCLUDED.title
        """,
        catalogue,
        item_ids,
        data.movies.titles.tolist(),
    )
    await connection.execute(
        "DELETE FROM catalogue_items WHERE catalogue = $1 AND NOT item_id = ANY($2::bigint[])",
        catalogue,
        item_ids,
    )
