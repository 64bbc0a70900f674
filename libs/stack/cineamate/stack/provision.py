"""Preparing the stores: database migrations and Kafka topics, both idempotent."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from cineamate.common.errors import DependencyUnavailable
from cineamate.common.kafka import ensure_topics
from cineamate.common.postgres import Migration, load_migrations, migrate
from cineamate.common.settings import CommonSettings
from cineamate.migrations import SQL_DIRECTORY

__all__ = ["apply_migrations", "create_topics", "provision"]

_log = logging.getLogger(__name__)


async def apply_migrations(database_url: str, *, timeout: float = 60.0) -> list[Migration]:
    """Apply pending migrations, waiting up to ``timeout`` for the database."""
    migrations = load_migrations(SQL_DIRECTORY)
    connection = await _retry(lambda: asyncpg.connect(database_url, timeout=5), timeout, "postgres")
    try:
        return await migrate(connection, migrations)
    finally:
        await connection.close()


async def create_topics(settings: CommonSettings, *, timeout: float = 60.0) -> list[str]:
    """Create missing topics, waiting up to ``timeout`` for the broker."""
    created: list[str] = await _retry(
        lambda: ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.topics(),
            replication_factor=settings.kafka_replication_factor,
        ),
        timeout,
        "kafka",
    )
    return created


async def provision(settings: CommonSettings, *, timeout: float = 60.0) -> None:
    """Migrations and topics."""
    applied = await apply_migrations(settings.database_url.get_secret_value(), timeout=timeout)
    created = await create_topics(settings, timeout=timeout)
    _log.info(
        "stores ready",
        extra={
            "migrations_applied": [f"{m.version:04d}_{m.name}" for m in applied],
            "topics_created": created,
        },
    )


async def _retry(attempt, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return await attempt()
        except (OSError, asyncpg.PostgresError, DependencyUnavailable, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise DependencyUnavailable(
                    f"{what} unreachable after {timeout:g} s: {exc}", code=f"unavailable.{what}"
                ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
