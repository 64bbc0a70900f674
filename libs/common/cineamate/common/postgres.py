"""PostgreSQL access: the connection pool and the versioned migration runner.

Migrations are SQL files named ``NNNN_description.sql``, applied in order,
each in its own transaction, and recorded in ``schema_migrations`` with a
checksum. Running the migrator again applies only what is new; an applied
file whose text changed is refused, since the database no longer matches it.
An advisory lock lets several processes start at once safely.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from cineamate.common.errors import ConfigError, DependencyUnavailable

__all__ = ["Migration", "create_pool", "load_migrations", "migrate"]

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed number: serialises concurrent migrators on one database.
_MIGRATION_LOCK_KEY = 0x43494E45


async def create_pool(dsn: str, *, max_size: int = 10, timeout: float = 5.0) -> asyncpg.Pool:
    """A connection pool; an unreachable server raises DependencyUnavailable."""
    try:
        return await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, timeout=timeout, command_timeout=60
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DependencyUnavailable(f"postgres: {exc}", code="unavailable.postgres") from exc


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """Read ``NNNN_name.sql`` files in version order; other names are an error."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise ConfigError(f"migration file {path.name} is not named NNNN_description.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"duplicate migration versions in {directory}")
    return migrations


async def migrate(connection: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    """Apply the migrations not yet applied; return them."""
    await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {row["version"]: row for row in rows}
        pending = []
        for migration in migrations:
            row = applied.get(migration.version)
            if row is None:
                pending.append(migration)
            elif row["checksum"] != migration.checksum:
                raise ConfigError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it "
                    "was applied; add a new migration instead",
                    code="invalid.migration",
                )
        for migration in pending:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        return pending
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
