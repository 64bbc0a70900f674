"""The migration runner against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from cineamate.common.errors import ConfigError
from cineamate.common.postgres import load_migrations, migrate
from cineamate.migrations import SQL_DIRECTORY

pytestmark = pytest.mark.integration


async def test_platform_migrations_apply_once(fresh_database: str) -> None:
    connection = await asyncpg.connect(fresh_database)
    try:
        migrations = load_migrations(SQL_DIRECTORY)
        first = await migrate(connection, migrations)
        second = await migrate(connection, migrations)
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    finally:
        await connection.close()
    assert [m.version for m in first] == [m.version for m in migrations]
    assert second == []
    assert {"schema_migrations", "experiments", "experiment_audit"} <= tables


async def test_a_changed_applied_migration_is_refused(fresh_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int);")
    connection = await asyncpg.connect(fresh_database)
    try:
        await migrate(connection, load_migrations(tmp_path))
        (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id bigint);")
        with pytest.raises(ConfigError, match="was changed after it was applied"):
            await migrate(connection, load_migrations(tmp_path))
    finally:
        await connection.close()


async def test_a_failing_migration_leaves_nothing_half_applied(
    fresh_database: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half (id int); SELECT nonsense;")
    connection = await asyncpg.connect(fresh_database)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await migrate(connection, load_migrations(tmp_path))
        applied = await connection.fetch("SELECT version FROM schema_migrations")
        half = await connection.fetchval("SELECT to_regclass('half')")
    finally:
        await connection.close()
    assert [row["version"] for row in applied] == [1]
    assert half is None


async def test_concurrent_migrators_apply_each_migration_once(fresh_database: str) -> None:
    migrations = load_migrations(SQL_DIRECTORY)

    async def one() -> int:
        connection = await asyncpg.connect(fresh_database)
        try:
            return len(await migrate(connection, migrations))
        finally:
            await connection.close()

    counts = await asyncio.gather(*(one() for _ in range(4)))
    assert sorted(counts) == [0, 0, 0, len(migrations)]
