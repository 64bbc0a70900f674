"""Bulk writes: COPY into a session-private staging table, then one set-based statement.

Staging tables are temporary copies of the target's columns, emptied at
commit, so every write here belongs to the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

__all__ = ["DailyPartitions", "day_of", "insert_new", "upsert"]


def day_of(moment: datetime) -> date:
    """The UTC day of a moment: the partition it belongs to."""
    return moment.astimezone(UTC).date()


async def _stage(
    connection: asyncpg.Connection,
    staging: str,
    definition: str,
    columns: Sequence[str],
    rows: Sequence[Any],
) -> str:
    await connection.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} {definition} ON COMMIT DELETE ROWS"
    )
    await connection.copy_records_to_table(staging, records=rows, columns=list(columns))
    return staging


async def insert_new(
    connection: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Any],
    *,
    returning: str,
) -> set[Any]:
    """Insert ``rows``, skipping those whose key is already there; the ``returning``
    column of the rows actually added."""
    if not rows:
        return set()
    staging = await _stage(connection, f"staging_{table}", f"(LIKE {table})", columns, rows)
    names = ", ".join(columns)
    added = await connection.fetch(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} "
        f"ON CONFLICT DO NOTHING RETURNING {returning}"
    )
    return {row[0] for row in added}


async def upsert(
    connection: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Any],
    *,
    key: Sequence[str],
    updates: dict[str, str],
    where: str | None = None,
    returning: str | None = None,
) -> list[asyncpg.Record]:
    """Insert ``rows``, or on a ``key`` conflict set each column of ``updates`` to its
    SQL expression (the existing row is ``t``, the new one ``EXCLUDED``); the
    ``returning`` expressions of each row written, if asked."""
    if not rows:
        return []
    staging = await _stage(connection, f"staging_{table}", f"(LIKE {table})", columns, rows)
    names = ", ".join(columns)
    assignments = ", ".join(f"{column} = {expression}" for column, expression in updates.items())
    condition = f" WHERE {where}" if where else ""
    statement = (
        f"INSERT INTO {table} AS t ({names}) SELECT {names} FROM {staging} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {assignments}{condition}"
    )
    if returning is None:
        await connection.execute(statement)
        return []
    written: list[asyncpg.Record] = await connection.fetch(f"{statement} RETURNING {returning}")
    return written


class DailyPartitions:
    """Makes the day partitions of a table partitioned by a timestamp as rows need them,
    and drops those past the retention."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._known: set[date] = set()

    def name(self, day: date) -> str:
        return f"{self.table}_p{day:%Y%m%d}"

    async def ensure(self, connection: asyncpg.Connection, days: Iterable[date]) -> None:
        """Make the partitions of ``days`` that this instance does not know to exist."""
        for day in sorted(set(days) - self._known):
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            try:
                await connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.name(day)} PARTITION OF {self.table} "
                    f"FOR VALUES FROM ('{start.isoformat()}') "
                    f"TO ('{(start + timedelta(days=1)).isoformat()}')"
                )
            except asyncpg.DuplicateTableError:
                pass  # another instance made it first
            self._known.add(day)

    def forget(self) -> None:
        """Forget which partitions exist: after a transaction that made some rolled back,
        the next ``ensure`` makes them again instead of trusting a partition that is gone."""
        self._known.clear()

    async def days(self, connection: asyncpg.Connection) -> list[date]:
        """The days that have a partition, oldest first."""
        names = await connection.fetch(
            "SELECT child.relname FROM pg_inherits "
            "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE parent.relname = $1",
            self.table,
        )
        prefix = f"{self.table}_p"
        return sorted(
            datetime.strptime(row[0].removeprefix(prefix), "%Y%m%d").date()
            for row in names
            if row[0].startswith(prefix)
        )

    async def drop_before(self, connection: asyncpg.Connection, horizon: date) -> list[date]:
        """Drop every partition of a day before ``horizon``; the days dropped."""
        dropped = [day for day in await self.days(connection) if day < horizon]
        for day in dropped:
            await connection.execute(f"DROP TABLE IF EXISTS {self.name(day)}")
            self._known.discard(day)
        return dropped
