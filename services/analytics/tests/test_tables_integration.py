"""Day partitions against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from cineamate.analytics.tables import DailyPartitions, day_of
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
