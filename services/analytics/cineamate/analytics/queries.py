"""The SQL the dashboard API runs: reads of the aggregates (and the raw tables for the
event log and export), returning plain rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

__all__ = [
    "EVENT_TYPES",
    "EventPage",
    "EventQuery",
    "RecentServes",
    "arm_totals",
    "cohort_counts",
    "event_columns",
    "event_page",
    "export_rows",
    "latest_posteriors",
    "recent_item_serves",
    "timeseries_rows",
    "user_counts",
    "variant_totals",
]

EventType = Literal["serve", "reward", "click", "late_click"]
EVENT_TYPES: tuple[EventType, ...] = ("serve", "reward", "click", "late_click")


async def variant_totals(pool: asyncpg.Pool, experiment_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT variant, serves, errors, within_sla, latency_sum_ms, latency_buckets, "
        "outcomes, rewards, late_clicks FROM analytics_variant_totals "
        "WHERE experiment_id = $1 ORDER BY variant",
        experiment_id,
    )
    return rows


async def user_counts(
    pool: asyncpg.Pool, experiment_id: str, active_window: timedelta
) -> tuple[dict[str, int], dict[str, int]]:
    """Users per variant, and those seen within ``active_window`` of the latest serve."""
    rows = await pool.fetch(
        "WITH latest AS (SELECT max(last_seen) AS at FROM analytics_users "
        "WHERE experiment_id = $1) "
        "SELECT variant, count(*) AS users, "
        "count(*) FILTER (WHERE last_seen >= (SELECT at FROM latest) - $2::interval) AS active "
        "FROM analytics_users WHERE experiment_id = $1 GROUP BY variant",
        experiment_id,
        active_window,
    )
    return (
        {row["variant"]: row["users"] for row in rows},
        {row["variant"]: row["active"] for row in rows},
    )


async def timeseries_rows(
    pool: asyncpg.Pool,
    experiment_id: str,
    start: datetime | None,
    stop: datetime | None,
    interval: timedelta,
) -> list[asyncpg.Record]:
    """Serves, rewards and clicks per variant and ``interval``; read from the hourly rows
    when the interval is whole hours (and the range too), else from the minute rows."""
    hourly = interval % timedelta(hours=1) == timedelta(0) and all(
        moment is None or moment == moment.replace(minute=0, second=0, microsecond=0)
        for moment in (start, stop)
    )
    table, column = (
        ("analytics_variant_hours", "hour") if hourly else ("analytics_variant_minutes", "minute")
    )
    rows: list[asyncpg.Record] = await pool.fetch(
        f"SELECT date_bin($4::interval, {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00') "
        "AS bucket, variant, sum(serves) AS serves, sum(outcomes) AS outcomes, "
        f"sum(rewards) AS rewards FROM {table} WHERE experiment_id = $1 "
        f"AND ($2::timestamptz IS NULL OR {column} >= $2) "
        f"AND ($3::timestamptz IS NULL OR {column} < $3) "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        experiment_id,
        start,
        stop,
        interval,
    )
    return rows


async def minute_range(
    pool: asyncpg.Pool, experiment_id: str
) -> tuple[datetime | None, datetime | None]:
    row = await pool.fetchrow(
        "SELECT min(minute), max(minute) FROM analytics_variant_minutes WHERE experiment_id = $1",
        experiment_id,
    )
    return (row[0], row[1]) if row else (None, None)


async def arm_totals(
    pool: asyncpg.Pool, experiment_id: str, variant: str | None, limit: int
) -> list[asyncpg.Record]:
    """The most served items of each variant, and the variant's serves of all items."""
    # A top-n per variant (a heap of n rows) instead of ranking every item of every
    # variant: a few thousand items per variant.
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT v.variant, top.item_id, top.serves, top.outcomes, top.rewards, "
        "v.variant_serves FROM ("
        "  SELECT variant, sum(serves)::bigint AS variant_serves FROM analytics_item_totals "
        "  WHERE experiment_id = $1 AND ($2::text IS NULL OR variant = $2) GROUP BY variant"
        ") v CROSS JOIN LATERAL ("
        "  SELECT item_id, serves, outcomes, rewards FROM analytics_item_totals t "
        "  WHERE t.experiment_id = $1 AND t.variant = v.variant "
        "  ORDER BY serves DESC, item_id LIMIT $3"
        ") top ORDER BY v.variant, top.serves DESC, top.item_id",
        experiment_id,
        variant,
        limit,
    )
    return rows


async def variant_serves(pool: asyncpg.Pool, experiment_id: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT variant, serves FROM analytics_variant_totals WHERE experiment_id = $1",
        experiment_id,
    )
    return {row["variant"]: row["serves"] for row in rows}


@dataclass(frozen=True)
class RecentServes:
    """Serves in the experiment's latest hour of data: of some items, and of all items
    per variant."""

    hour: datetime | None
    items: dict[tuple[str, int], int]
    variants: dict[str, int]


async def recent_item_serves(
    pool: asyncpg.Pool, experiment_id: str, items: list[int]
) -> RecentServes:
    """Serves of ``items`` per variant in the experiment's latest hour, and of every item
    per variant (summed here: an hour holds a row per item and variant)."""
    latest = await pool.fetchval(
        "SELECT max(minute) FROM analytics_variant_minutes WHERE experiment_id = $1",
        experiment_id,
    )
    if latest is None:
        return RecentServes(None, {}, {})
    hour = latest.replace(minute=0, second=0, microsecond=0)
    rows = await pool.fetch(
        "SELECT variant, item_id, serves FROM analytics_item_hours "
        "WHERE experiment_id = $1 AND hour = $2 AND item_id = ANY($3::bigint[])",
        experiment_id,
        hour,
        items,
    )
    totals = await pool.fetch(
        "SELECT variant, sum(serves)::bigint FROM analytics_item_hours "
        "WHERE experiment_id = $1 AND hour = $2 GROUP BY variant",
        experiment_id,
        hour,
    )
    return RecentServes(
        hour,
        {(row[0], row[1]): row[2] for row in rows},
        {row[0]: row[1] for row in totals},
    )


async def latest_posteriors(
    pool: asyncpg.Pool, experiment_id: str, items: list[int]
) -> dict[tuple[str, int], tuple[float, float]]:
    rows = await pool.fetch(
        "SELECT variant, item_id, pulls, successes FROM analytics_arm_posteriors "
        "WHERE experiment_id = $1 AND item_id = ANY($2::bigint[])",
        experiment_id,
        items,
    )
    return {(row["variant"], row["item_id"]): (row["pulls"], row["successes"]) for row in rows}


async def cohort_counts(
    pool: asyncpg.Pool, experiment_id: str, attribute: str
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT variant, value, serves, outcomes, rewards FROM analytics_cohorts "
        "WHERE experiment_id = $1 AND attribute = $2 ORDER BY variant, value",
        experiment_id,
        attribute,
    )
    return rows


async def cohort_attributes(pool: asyncpg.Pool, experiment_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT DISTINCT attribute FROM analytics_cohorts WHERE experiment_id = $1 "
        "ORDER BY attribute",
        experiment_id,
    )
    return [row[0] for row in rows]


@dataclass(frozen=True)
class EventQuery:
    """Which events of an experiment to list, in (time, id) order."""

    experiment_id: str
    type: EventType
    variant: str | None = None
    start: datetime | None = None
    stop: datetime | None = None
    after: tuple[datetime, str] | None = None  # the last (time, id) already seen


# Per event type: table, time column, id column, the columns listed, an extra condition.
# Outcomes are listed in the order of their serves: ``analytics_rewards`` is a view over
# ``analytics_outcomes``, whose rows (one per serve) are indexed by serve time.
_EVENT_SOURCES: dict[EventType, tuple[str, str, str, str, str]] = {
    "serve": (
        "analytics_serves",
        "served_at",
        "serve_id",
        "serve_id, variant, policy_type, user_id, cohort, item_ids, propensities, "
        "state_version, latency_ms, status, served_at",
        "",
    ),
    "reward": (
        "analytics_rewards",
        "served_at",
        "reward_id",
        "reward_id, serve_id, variant, policy_type, item_id, position, propensity, reward, "
        "user_id, served_at, rewarded_at",
        "",
    ),
    "click": (
        "analytics_rewards",
        "served_at",
        "reward_id",
        "reward_id, serve_id, variant, item_id, position, user_id, served_at, "
        "rewarded_at AS clicked_at",
        " AND reward > 0",
    ),
    "late_click": (
        "analytics_late_clicks",
        "clicked_at",
        "event_id",
        "event_id, serve_id, variant, item_id, user_id, clicked_at, window_closed_at",
        "",
    ),
}


def _event_sql(query: EventQuery, limit: int | None) -> tuple[str, list[Any]]:
    table, time_column, id_column, columns, extra = _EVENT_SOURCES[query.type]
    conditions = [f"experiment_id = $1{extra}"]
    args: list[Any] = [query.experiment_id]
    if query.variant is not None:
        args.append(query.variant)
        conditions.append(f"variant = ${len(args)}")
    if query.start is not None:
        args.append(query.start)
        conditions.append(f"{time_column} >= ${len(args)}")
    if query.stop is not None:
        args.append(query.stop)
        conditions.append(f"{time_column} < ${len(args)}")
    if query.after is not None:
        args += list(query.after)
        # The first condition alone lets the index skip what came before.
        conditions.append(f"{time_column} >= ${len(args) - 1}")
        conditions.append(f"({time_column}, {id_column}) > (${len(args) - 1}, ${len(args)})")
    sql = (
        f"SELECT {columns}, {time_column} AS cursor_time, {id_column} AS cursor_id "
        f"FROM {table} WHERE {' AND '.join(conditions)} "
        f"ORDER BY {time_column}, {id_column}"
    )
    if limit is not None:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    return sql, args


def event_columns(type_: EventType) -> list[str]:
    """The columns an event listing or export of ``type_`` has, in order."""
    listed = _EVENT_SOURCES[type_][3]
    return [column.strip().split(" AS ")[-1] for column in listed.split(",")]


@dataclass(frozen=True)
class EventPage:
    rows: list[asyncpg.Record]
    more: bool


async def event_page(pool: asyncpg.Pool, query: EventQuery, limit: int) -> EventPage:
    """Up to ``limit`` events after the cursor, and whether more follow."""
    sql, args = _event_sql(query, limit + 1)
    rows = await pool.fetch(sql, *args)
    return EventPage(rows[:limit], len(rows) > limit)


async def export_rows(
    pool: asyncpg.Pool, query: EventQuery, chunk: int
) -> AsyncIterator[asyncpg.Record]:
    """Every event the query selects, read through a server-side cursor ``chunk`` at a time."""
    sql, args = _event_sql(query, None)
    async with pool.acquire() as connection, connection.transaction():
        async for row in connection.cursor(sql, *args, prefetch=chunk):
            yield row
