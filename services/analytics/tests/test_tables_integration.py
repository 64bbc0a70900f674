"""Day partitions and the outcome rows against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from reward_messages import outcome_message

from cineamate.analytics.ingest import add_outcomes
from cineamate.analytics.tables import DailyPartitions, day_of
from cineamate.common.errors import DependencyUnavailable
from cineamate.stack.testing import provision

pytestmark = pytest.mark.integration


async def test_a_partition_made_in_a_rolled_back_transaction_is_made_again(
    isolated_env: dict[str, str],
) -> None:
    provision(isolated_env)
    connection = await asyncpg.connect(isolated_env["DATABASE_URL"])
    partitions = DailyPartitions("analytics_clicks")
    moment = datetime(2026, 5, 1, 12, tzinfo=UTC)
    try:
        with pytest.raises(RuntimeError):
            async with connection.transaction():
                await partitions.ensure(connection, [day_of(moment)])
                raise RuntimeError("the batch failed after making its partition")
        assert day_of(moment) not in await partitions.days(connection)

        partitions.forget()
        await partitions.ensure(connection, [day_of(moment)])
        assert day_of(moment) in await partitions.days(connection)
        await connection.execute(
            "INSERT INTO analytics_clicks (event_id, serve_id, item_id, user_id, clicked_at) "
            "VALUES ('e1', 's1', 1, 'u1', $1)",
            moment,
        )
    finally:
        await connection.close()


class _WriterBetween:
    """A real connection on which another writer stores ``row`` right after the lock
    query: the interleaving of two instances during a rebalance, made certain."""

    def __init__(self, connection: asyncpg.Connection, other: asyncpg.Connection) -> None:
        self._connection = connection
        self._other = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._connection.fetch(query, *args)
        if "FOR UPDATE" in query:
            async with self._other.transaction():
                await add_outcomes(self._other, [_message("s1", {2: 1.0})])
        return rows


def _message(serve_id: str, outcomes: dict[int, float]) -> tuple[Any, ...]:
    return outcome_message(serve_id, outcomes, served_at=SERVED, rewarded_at=SERVED)


SERVED = datetime(2026, 5, 2, 12, tzinfo=UTC)


async def test_outcomes_are_added_once_and_another_writer_in_between_forces_a_retry(
    isolated_env: dict[str, str],
) -> None:
    provision(isolated_env)
    connection = await asyncpg.connect(isolated_env["DATABASE_URL"])
    other = await asyncpg.connect(isolated_env["DATABASE_URL"])
    try:
        await DailyPartitions("analytics_outcomes").ensure(connection, [day_of(SERVED)])
        async with connection.transaction():
            added = await add_outcomes(connection, [_message("s0", {1: 1.0, 2: 0.0})])
        async with connection.transaction():
            again = await add_outcomes(connection, [_message("s0", {2: 1.0, 3: 0.0})])
        assert (added.fresh, again.fresh) == ({("s0", 1), ("s0", 2)}, {("s0", 3)})
        stored = await connection.fetchrow(
            "SELECT item_ids, rewards FROM analytics_outcomes WHERE serve_id = 's0'"
        )
        assert (stored["item_ids"], stored["rewards"]) == ([1, 2, 3], [1.0, 0.0, 0.0])

        with pytest.raises(DependencyUnavailable):
            async with connection.transaction():
                await add_outcomes(
                    _WriterBetween(connection, other),  # type: ignore[arg-type]
                    [_message("s1", {1: 0.0, 2: 0.0})],
                )
        # Retried, the batch counts only what the other writer had not added.
        async with connection.transaction():
            retried = await add_outcomes(connection, [_message("s1", {1: 0.0, 2: 0.0})])
        assert retried.fresh == {("s1", 1)}
        outcomes = await connection.fetch(
            "SELECT reward_id, reward FROM analytics_rewards WHERE serve_id = 's1' "
            "ORDER BY reward_id"
        )
        assert [tuple(row) for row in outcomes] == [("s1:1", 0.0), ("s1:2", 1.0)]
    finally:
        await other.close()
        await connection.close()
