"""``cineamate dataset load``: tables, catalogue and columnar file from a data set; loading
twice leaves one copy; counts other than ML-1M's are refused unless asked for."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from cineamate.offline.movielens import MovieLens, read_columnar, write_synthetic
from cineamate.stack.testing import run_cli


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[MovieLens, Path]:
    directory = tmp_path_factory.mktemp("ml-load")
    return write_synthetic(directory, scale=0.03, seed=21), directory


async def _fetch_counts(database_url: str) -> dict[str, object]:
    connection = await asyncpg.connect(database_url)
    try:
        return {
            "ratings": await connection.fetchval("SELECT count(*) FROM movielens_ratings"),
            "users": await connection.fetchval("SELECT count(*) FROM movielens_users"),
            "movies": await connection.fetchval("SELECT count(*) FROM movielens_movies"),
            "rated": await connection.fetchval(
                "SELECT count(DISTINCT movie_id) FROM movielens_ratings"
            ),
            "catalogue": await connection.fetch(
                "SELECT item_id, title FROM catalogue_items WHERE catalogue = 'movielens' "
                "ORDER BY item_id"
            ),
            "first": await connection.fetchrow(
                "SELECT user_id, movie_id, rating, rated_unix, "
                "extract(epoch FROM rated_at)::bigint AS rated_at "
                "FROM movielens_ratings ORDER BY rated_unix, user_id, movie_id LIMIT 1"
            ),
            "genres": await connection.fetchval(
                "SELECT genres FROM movielens_movies ORDER BY movie_id LIMIT 1"
            ),
        }
    finally:
        await connection.close()


@pytest.mark.integration
def test_load_fills_tables_catalogue_and_columnar_file_once(
    synthetic: tuple[MovieLens, Path], isolated_env: dict[str, str]
) -> None:
    data, directory = synthetic
    for _ in range(2):
        done = run_cli(isolated_env, "dataset", "load", str(directory), "--any-size")
        assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"loaded {len(data):,} ratings, {len(data.users):,} users")
    assert "catalogue 'movielens'" in summary and summary.endswith(" s")

    found = asyncio.run(_fetch_counts(isolated_env["DATABASE_URL"]))
    assert found["ratings"] == len(data)
    assert found["users"] == len(data.users)
    assert found["movies"] == len(data.movies)
    assert found["rated"] == len(data.rated_movie_ids())
    catalogue = found["catalogue"]
    assert isinstance(catalogue, list)
    assert [row["item_id"] for row in catalogue] == data.movies.movie_ids.tolist()
    assert [row["title"] for row in catalogue] == data.movies.titles.tolist()
    first = found["first"]
    assert isinstance(first, asyncpg.Record)
    assert tuple(first) == (
        data.user_ids[0],
        data.movie_ids[0],
        data.ratings[0],
        data.timestamps[0],
        data.timestamps[0],
    )
    assert found["genres"] == data.movies.genres[0].split("|")

    columnar = read_columnar(directory / "movielens.npz")
    assert np.array_equal(columnar.timestamps, data.timestamps)
    assert columnar.truth is not None


@pytest.mark.integration
def test_a_smaller_load_replaces_tables_and_catalogue(
    synthetic: tuple[MovieLens, Path], isolated_env: dict[str, str], tmp_path: Path
) -> None:
    smaller = write_synthetic(tmp_path, scale=0.01, seed=22)
    for directory in (synthetic[1], tmp_path):
        done = run_cli(isolated_env, "dataset", "load", str(directory), "--any-size")
        assert done.returncode == 0, done.stderr
    found = asyncio.run(_fetch_counts(isolated_env["DATABASE_URL"]))
    assert found["ratings"] == len(smaller)
    assert found["movies"] == len(smaller.movies)
    catalogue = found["catalogue"]
    assert isinstance(catalogue, list)
    assert [row["item_id"] for row in catalogue] == smaller.movies.movie_ids.tolist()


def test_load_refuses_counts_other_than_ml_1m_naming_them(
    synthetic: tuple[MovieLens, Path], tmp_path: Path
) -> None:
    data, directory = synthetic
    # Refused before any connection: the database named here does not exist.
    env = dict(os.environ, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    done = run_cli(env, "dataset", "load", str(directory), "--columnar", str(tmp_path / "x.npz"))
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert f"{len(data):,} ratings" in error
    assert "1,000,209 ratings, 6,040 users, 3,706 rated of 3,883 listed movies" in error
    assert "--any-size" in error
    assert not (tmp_path / "x.npz").exists()


def test_load_without_database_url_says_so(synthetic: tuple[MovieLens, Path]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = run_cli(env, "dataset", "load", str(synthetic[1]), "--any-size")
    assert done.returncode == 2
    assert "DATABASE_URL is not set" in done.stderr
