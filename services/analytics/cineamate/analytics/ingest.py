"""The ingest: every event topic into PostgreSQL, raw and aggregated, exactly once.

One consumer group reads ``serves``, ``clicks``, ``rewards``, ``late-clicks``
and ``state-updates``. Per batch, in one transaction: make the day partitions
the events need, insert the raw rows skipping ids already there (a serve's
outcomes go into its one row, each item's first outcome only), sum the
aggregates over the rows actually added, upsert them, and keep the learner's
latest arm counts. The consumer commits after the transaction, so a batch
delivered again adds nothing.

Raw events older than the retention (counted back from the newest day seen)
are not stored and not counted: their partitions are gone, and counting them
again after a redelivery could not be undone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter

from cineamate.analytics import rows as r
from cineamate.analytics.settings import AnalyticsSettings
from cineamate.analytics.tables import DailyPartitions, day_of, insert_new, upsert
from cineamate.common.dependencies import Dependencies
from cineamate.common.errors import DependencyUnavailable, InvalidEvent
from cineamate.common.events import (
    ClickEvent,
    LateClick,
    PosteriorUpdate,
    RewardEvent,
    ServeEvent,
    state_update_adapter,
)
from cineamate.common.experiments import ExperimentCache
from cineamate.common.kafka import BatchConsumer, Record, Rejected, json_decoder

__all__ = ["Ingest", "add_outcomes"]

_log = logging.getLogger(__name__)

INGESTED = Counter(
    "cineamate_analytics_ingested_total", "Events added to the analytics tables.", ("kind",)
)
EXPIRED = Counter(
    "cineamate_analytics_expired_total",
    "Events older than the retention, neither stored nor counted.",
    ("kind",),
)

_ADD = "t.{0} + EXCLUDED.{0}"


def _additive(*columns: str) -> dict[str, str]:
    return {column: _ADD.format(column) for column in columns}


_MINUTE_UPDATES = _additive(
    "serves", "errors", "within_sla", "latency_sum_ms", "outcomes", "rewards", "late_clicks"
) | {
    "latency_buckets": "(SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i) "
    "FROM unnest(t.latency_buckets, EXCLUDED.latency_buckets) WITH ORDINALITY AS u(a, b, i))"
}
_COUNT_UPDATES = _additive("serves", "outcomes", "rewards")
_USER_UPDATES = {
    "variant": "CASE WHEN EXCLUDED.last_seen >= t.last_seen THEN EXCLUDED.variant "
    "ELSE t.variant END",
    "first_seen": "LEAST(t.first_seen, EXCLUDED.first_seen)",
    "last_seen": "GREATEST(t.last_seen, EXCLUDED.last_seen)",
    "serves": _ADD.format("serves"),
}
_POSTERIOR_UPDATES = {
    "pulls": "EXCLUDED.pulls",
    "successes": "EXCLUDED.successes",
    "version": "EXCLUDED.version",
}


@dataclass(frozen=True)
class _Aggregate:
    """An aggregate table: its columns, key and how a new row adds to an existing one."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    updates: dict[str, str]
    where: str | None = None


_MINUTES = _Aggregate(
    "analytics_variant_minutes",
    r.MINUTE_COLUMNS,
    ("experiment_id", "variant", "minute"),
    _MINUTE_UPDATES,
)
_HOURS = _Aggregate(
    "analytics_variant_hours",
    r.HOUR_COLUMNS,
    ("experiment_id", "variant", "hour"),
    _MINUTE_UPDATES,
)
_TOTALS = _Aggregate(
    "analytics_variant_totals", r.TOTAL_COLUMNS, ("experiment_id", "variant"), _MINUTE_UPDATES
)
_ITEM_TOTALS = _Aggregate(
    "analytics_item_totals",
    r.ITEM_TOTAL_COLUMNS,
    ("experiment_id", "variant", "item_id"),
    _COUNT_UPDATES,
)
_ITEM_HOURS = _Aggregate(
    "analytics_item_hours",
    r.ITEM_COLUMNS,
    ("experiment_id", "variant", "item_id", "hour"),
    _COUNT_UPDATES,
)
_COHORTS = _Aggregate(
    "analytics_cohorts",
    r.COHORT_COLUMNS,
    ("experiment_id", "variant", "attribute", "value"),
    _COUNT_UPDATES,
)
_USERS = _Aggregate("analytics_users", r.USER_COLUMNS, ("experiment_id", "user_id"), _USER_UPDATES)
_POSTERIORS = _Aggregate(
    "analytics_arm_posteriors",
    r.POSTERIOR_COLUMNS,
    ("experiment_id", "variant", "item_id"),
    _POSTERIOR_UPDATES,
    where="EXCLUDED.version > t.version",
)


_RAW_COLUMNS = {
    "analytics_serves": r.SERVE_COLUMNS,
    "analytics_clicks": r.CLICK_COLUMNS,
    "analytics_late_clicks": r.LATE_CLICK_COLUMNS,
}
_OUTCOMES = "analytics_outcomes"
# The serves' outcomes already stored, locked until the batch commits. The served_at
# range keeps the lookup to the batch's day partitions.
_STORED_OUTCOMES = (
    f"SELECT serve_id, served_at, item_ids FROM {_OUTCOMES} "
    "WHERE serve_id = ANY($1::text[]) AND served_at >= $2 AND served_at <= $3 FOR UPDATE"
)
_APPEND_OUTCOMES = {column: f"t.{column} || EXCLUDED.{column}" for column in r.OUTCOME_ARRAYS}


@dataclass(frozen=True, slots=True)
class _Raw:
    """A raw event, its row in its table and the day of its partition."""

    event: Any
    row: tuple[Any, ...]
    day: date


def _raw_decoder(
    decode: Callable[[bytes | None], Any],
    row_of: Callable[[Any], tuple[Any, ...]],
    moment_of: Callable[[Any], datetime],
) -> Callable[[bytes | None], _Raw]:
    def decode_raw(value: bytes | None) -> _Raw:
        event = decode(value)
        return _Raw(event, row_of(event), day_of(moment_of(event)))

    return decode_raw


class _Batch:
    """A batch's events sorted by kind."""

    def __init__(self) -> None:
        self.serves: list[_Raw] = []
        self.rewards: list[_Raw] = []
        self.clicks: list[_Raw] = []
        self.late: list[_Raw] = []
        self.posteriors: list[PosteriorUpdate] = []


class Ingest:
    """Consumes the event topics into the analytics tables; a Worker of the analytics service."""

    name = "ingest"

    def __init__(self, settings: AnalyticsSettings, deps: Dependencies) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool = deps.pool
        self._experiments = ExperimentCache(
            deps.pool, ttl_seconds=settings.experiment_cache_seconds
        )
        limit = settings.max_message_bytes
        # The raw events come out of decoding with their row and day: the consumer decodes
        # the next batch while PostgreSQL writes this one (``overlap``).
        self._decoders: dict[str, Callable[[bytes | None], Any]] = {
            settings.serves_topic: _raw_decoder(
                json_decoder(ServeEvent, max_bytes=limit), r.serve_row, lambda e: e.served_at
            ),
            settings.clicks_topic: _raw_decoder(
                json_decoder(ClickEvent, max_bytes=limit), r.click_row, lambda e: e.clicked_at
            ),
            settings.rewards_topic: _raw_decoder(
                json_decoder(RewardEvent, max_bytes=limit),
                r.reward_message_row,
                lambda e: e.served_at,
            ),
            settings.late_clicks_topic: _raw_decoder(
                json_decoder(LateClick, max_bytes=limit),
                r.late_click_row,
                lambda e: e.clicked_at,
            ),
            settings.state_updates_topic: json_decoder(state_update_adapter, max_bytes=limit),
        }
        self.partitions = {
            table: DailyPartitions(table)
            for table in (
                "analytics_serves",
                _OUTCOMES,
                "analytics_clicks",
                "analytics_late_clicks",
            )
        }
        self._newest_day: date | None = None
        self._last_retention = 0.0
        self._consumer: BatchConsumer[Any] = BatchConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=list(self._decoders),
            group_id=settings.consumer_group,
            decode=self._decoders,
            handle=self.handle,
            dead_letters=deps.producer,
            dead_letter_topic=settings.dead_letter_topic,
            max_records=settings.ingest_max_records,
            retry_max_seconds=settings.dependency_retry_max_seconds,
            on_idle=self.apply_retention,
            overlap=True,
        )

    async def run(self) -> None:
        await self._consumer.start()
        await self._consumer.run()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def handle(self, records: list[Record[Any]]) -> Sequence[Rejected]:
        try:
            batch, rejected = await self._sort(records)
            sla = await self._latency_slas(batch.serves)
            async with self._pool.acquire() as connection, connection.transaction():
                await self._write(connection, batch, sla)
        except BaseException as exc:
            # The partitions this batch made rolled back with it: a retry must make them
            # again, or every row of their day would fail (and be dead-lettered).
            for partitions in self.partitions.values():
                partitions.forget()
            if isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
                raise DependencyUnavailable(
                    f"postgres: {exc}", code="unavailable.postgres"
                ) from exc
            raise
        return rejected

    async def _sort(self, records: list[Record[Any]]) -> tuple[_Batch, list[Rejected]]:
        """The batch's events by kind; those of an experiment that does not exist are
        rejected."""
        batch = _Batch()
        rejected: list[Rejected] = []
        # One lookup per experiment, not per event: a batch holds a few experiments.
        named = {name for record in records if (name := _experiment_of(record.event))}
        unknown = {name for name in named if await self._experiments.get(name) is None}
        lists: dict[str, list[Any]] = {
            self._settings.serves_topic: batch.serves,
            self._settings.rewards_topic: batch.rewards,
            self._settings.clicks_topic: batch.clicks,
            self._settings.late_clicks_topic: batch.late,
        }
        for record in records:
            event = record.event
            experiment_id = _experiment_of(event)
            if experiment_id in unknown:
                error = InvalidEvent(
                    f"unknown experiment {experiment_id!r}", code="invalid.experiment"
                )
                rejected.append(Rejected.of(record, error))
            elif (kind := lists.get(record.raw.topic)) is not None:
                kind.append(event)
            elif isinstance(event, PosteriorUpdate):
                batch.posteriors.append(event)
        return batch, rejected

    async def _latency_slas(self, serves: list[_Raw]) -> dict[str, float]:
        slas = {}
        for experiment_id in {serve.event.experiment_id for serve in serves}:
            experiment = await self._experiments.get(experiment_id)
            if experiment is not None:
                slas[experiment_id] = experiment.config.guardrails.latency_p95_ms
        return slas

    def _retained(self, kind: str, raws: list[_Raw]) -> list[_Raw]:
        if not raws:
            return raws
        newest = max(raw.day for raw in raws)
        if self._newest_day is None or newest > self._newest_day:
            self._newest_day = newest
        horizon = self._horizon()
        if horizon is None:
            return raws
        kept = [raw for raw in raws if raw.day >= horizon]
        if len(kept) < len(raws):
            EXPIRED.labels(kind).inc(len(raws) - len(kept))
        return kept

    def _horizon(self) -> date | None:
        days = self._settings.retention_days
        if days <= 0 or self._newest_day is None:
            return None
        return self._newest_day - timedelta(days=days - 1)

    async def _write(
        self, connection: asyncpg.Connection, batch: _Batch, sla: dict[str, float]
    ) -> None:
        serves = self._retained("serve", batch.serves)
        rewards = self._retained("reward", batch.rewards)
        clicks = self._retained("click", batch.clicks)
        late = self._retained("late_click", batch.late)

        fresh_serves = await self._insert(connection, "analytics_serves", serves, "serve_id")
        outcomes = await self._add_outcomes(connection, rewards)
        fresh_clicks = await self._insert(connection, "analytics_clicks", clicks, "event_id")
        fresh_late = await self._insert(connection, "analytics_late_clicks", late, "event_id")
        added = r.aggregate(
            _first_of_each(serves, fresh_serves, lambda e: e.serve_id),
            outcomes.rows,
            _first_of_each(late, fresh_late, lambda e: e.event_id),
            sla_ms=sla,
            default_sla_ms=self._settings.default_latency_sla_ms,
        )
        aggregates = (
            (_MINUTES, added.minute_rows()),
            (_HOURS, added.hour_rows()),
            (_TOTALS, added.total_rows()),
            (_ITEM_TOTALS, added.item_total_rows()),
            (_ITEM_HOURS, added.item_rows()),
            (_COHORTS, added.cohort_rows()),
            (_USERS, added.user_rows()),
            (_POSTERIORS, _latest_posteriors(batch.posteriors)),
        )
        for table, rows in aggregates:
            await upsert(
                connection,
                table.name,
                table.columns,
                rows,
                key=table.key,
                updates=table.updates,
                where=table.where,
            )
        for kind, count in (
            ("serve", len(fresh_serves)),
            ("reward", outcomes.count),
            ("click", len(fresh_clicks)),
            ("late_click", len(fresh_late)),
            ("posterior_update", len(batch.posteriors)),
        ):
            INGESTED.labels(kind).inc(count)

    async def _insert(
        self, connection: asyncpg.Connection, table: str, raws: list[_Raw], key: str
    ) -> set[Any]:
        """Insert the raw events not stored yet; the ``key`` of those added."""
        if not raws:
            return set()
        await self.partitions[table].ensure(connection, {raw.day for raw in raws})
        rows = [raw.row for raw in raws]
        return await insert_new(connection, table, _RAW_COLUMNS[table], rows, returning=key)

    async def _add_outcomes(
        self, connection: asyncpg.Connection, rewards: list[_Raw]
    ) -> r.NewOutcomes:
        if not rewards:
            return r.NewOutcomes([], {})
        await self.partitions[_OUTCOMES].ensure(connection, {raw.day for raw in rewards})
        return await add_outcomes(connection, [raw.row for raw in rewards])

    async def apply_retention(self) -> None:
        """Drop raw partitions past the retention, at most once a minute."""
        horizon = self._horizon()
        if horizon is None or time.monotonic() - self._last_retention < 60:
            return
        self._last_retention = time.monotonic()
        async with self._pool.acquire() as connection:
            for partitions in self.partitions.values():
                dropped = await partitions.drop_before(connection, horizon)
                if dropped:
                    _log.info(
                        "raw partitions dropped",
                        extra={"table": partitions.table, "days": [str(d) for d in dropped]},
                    )


async def add_outcomes(
    connection: asyncpg.Connection, messages: list[tuple[Any, ...]]
) -> r.NewOutcomes:
    """Add the reward messages' outcomes (``reward_message_row``s) to their serves' rows,
    each outcome once, in the caller's transaction; what was added. The day partitions
    must exist."""
    keys = [r.serve_key(message) for message in messages]
    served = [served_at for _, served_at in keys]
    stored = await connection.fetch(
        _STORED_OUTCOMES, list({serve_id for serve_id, _ in keys}), min(served), max(served)
    )
    new = r.new_outcomes(messages, {(row[0], row[1]): row[2] for row in stored})
    written = await upsert(
        connection,
        _OUTCOMES,
        r.OUTCOME_COLUMNS,
        new.rows,
        key=("serve_id", "served_at"),
        updates=_APPEND_OUTCOMES,
        returning="serve_id, served_at, cardinality(item_ids)",
    )
    # A row that was not there when locked, but is now, was added by another instance
    # meanwhile (a rebalance): what this batch would count of it could be wrong.
    if any(new.sizes[(row[0], row[1])] != row[2] for row in written):
        raise DependencyUnavailable(
            "postgres: another writer added outcomes of this batch's serves; retrying",
            code="conflict.outcomes",
        )
    return new


def _experiment_of(event: Any) -> str | None:
    inner = event.event if isinstance(event, _Raw) else event
    experiment_id: str | None = getattr(inner, "experiment_id", None)
    return experiment_id


def _first_of_each(raws: list[_Raw], fresh: set[Any], key: Callable[[Any], Any]) -> list[Any]:
    """The events whose key the insert added, once each (a batch may hold one twice)."""
    kept = []
    pending = set(fresh)
    for raw in raws:
        identity = key(raw.event)
        if identity in pending:
            pending.discard(identity)
            kept.append(raw.event)
    return kept


def _latest_posteriors(updates: list[PosteriorUpdate]) -> list[tuple[Any, ...]]:
    """One row per arm: the highest version in the batch."""
    latest: dict[tuple[str, str, int], tuple[Any, ...]] = {}
    for update in sorted(updates, key=lambda u: u.version):
        for row in r.posterior_rows(update):
            latest[(row[0], row[1], row[2])] = row
    return list(latest.values())
