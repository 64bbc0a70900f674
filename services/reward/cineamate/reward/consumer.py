"""The join's consumer loop: serves and clicks in, rewards out, state in Redis.

One consumer group reads ``serves`` and ``clicks``; partition p of both
topics is one join partition (both are keyed by serve id with the same
partitioner and must have as many partitions, which ``run`` checks). Per
batch and join partition:

    skip        records at or below the offsets the stored state includes
    decode      per topic; a bad message is refused
    watermark   from the inputs' event-time clocks (see ``watermark``)
    load        the state the events name and what the watermark makes due
    join        pure (see ``join``): rewards, late clicks, refused records
    produce     rewards, late clicks and dead letters, acknowledged
    save        state, offsets and watermark in one Redis transaction

Then the batch consumer commits. A crash before ``save`` redoes the batch
from the same state, so any reward produced again carries the same ids; a
crash after it skips the records already applied. Dead letters are produced
here, before ``save``, so none is lost either. Polls that fetch nothing still
advance the watermark, so windows close on a quiet stream.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import TopicPartition

from cineamate.common.dependencies import Dependencies
from cineamate.common.errors import ConfigError, InvalidEvent
from cineamate.common.events import SCHEMA_VERSION, ClickEvent, ServeEvent
from cineamate.common.experiments import ExperimentCache
from cineamate.common.kafka import (
    BatchConsumer,
    EventProducer,
    OutgoingMessage,
    RawRecord,
    Record,
    Rejected,
    dead_letter_message,
    json_decoder,
    record_dead_letter,
    topic_partitions,
    undecoded,
)
from cineamate.reward import metrics
from cineamate.reward.join import (
    ClickIn,
    JoinResult,
    LateClickOut,
    RewardOut,
    ServeIn,
    join,
)
from cineamate.reward.settings import RewardSettings
from cineamate.reward.store import JoinMeta, JoinStore
from cineamate.reward.watermark import MICROS, InputClock, watermark

__all__ = ["RewardJoiner", "from_micros", "to_micros"]

_log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Event time as integer microseconds since the epoch (exact)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


class RewardJoiner:
    """Consumes ``serves`` and ``clicks``, produces ``rewards``; a Worker of the reward service."""

    name = "join"

    def __init__(self, settings: RewardSettings, deps: Dependencies) -> None:
        self._settings = settings
        self._producer: EventProducer = deps.producer
        self._experiments = ExperimentCache(
            deps.pool, ttl_seconds=settings.experiment_cache_seconds
        )
        self._click_grace = int(settings.click_grace_seconds * MICROS)
        self._lateness = int(settings.allowed_lateness_seconds * MICROS)
        self.store = JoinStore(
            deps.redis,
            namespace=f"{settings.consumer_group}:{settings.serves_topic}",
            click_grace=self._click_grace,
            retention=int(settings.closed_retention_seconds * MICROS),
        )
        self._inputs = {settings.serves_topic: "serves", settings.clicks_topic: "clicks"}
        self._topics = {name: topic for topic, name in self._inputs.items()}
        self._decoders = {
            "serves": json_decoder(ServeEvent, max_bytes=settings.max_message_bytes),
            "clicks": json_decoder(ClickEvent, max_bytes=settings.max_message_bytes),
        }
        # Wall-clock delivery times are this process's own: reset whenever partitions arrive.
        self._clocks: dict[int, dict[str, InputClock]] = {}
        self._consumer: BatchConsumer[bytes | None] = BatchConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=[settings.serves_topic, settings.clicks_topic],
            group_id=settings.consumer_group,
            # Decoding is per topic and part of the join: its refusals must be dead-lettered
            # before the state moves.
            decode=undecoded,
            handle=self.handle,
            dead_letters=self._producer,
            dead_letter_topic=settings.dead_letter_topic,
            max_records=settings.consumer_max_records,
            retry_max_seconds=settings.dependency_retry_max_seconds,
            on_idle=self.tick,
            on_assigned=self._assigned,
        )

    async def run(self) -> None:
        await self._check_copartitioned()
        await self._consumer.start()
        await self._consumer.run()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def handle(self, records: list[Record[bytes | None]]) -> Sequence[Rejected]:
        """Join a batch; everything it refuses is dead-lettered here, before the state moves."""
        by_partition: dict[int, list[RawRecord]] = defaultdict(list)
        for record in records:
            by_partition[record.raw.partition].append(record.raw)
        for partition in sorted(by_partition):
            await self._join_partition(partition, by_partition[partition])
        return ()

    async def tick(self) -> None:
        """Advance the watermark of every held partition that received nothing."""
        partitions = {tp.partition for tp in self._consumer.assignment()}
        for partition in sorted(partitions):
            await self._join_partition(partition, [])

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._clocks.pop(tp.partition, None)

    async def _check_copartitioned(self) -> None:
        bootstrap = self._settings.kafka_bootstrap_servers
        serves = await topic_partitions(bootstrap, self._settings.serves_topic)
        clicks = await topic_partitions(bootstrap, self._settings.clicks_topic)
        if serves != clicks:
            raise ConfigError(
                f"topics {self._settings.serves_topic!r} ({serves} partitions) and "
                f"{self._settings.clicks_topic!r} ({clicks}) must have as many partitions: "
                "the join is local to a partition",
                field="CINEAMATE_CLICKS_PARTITIONS",
            )

    async def _join_partition(self, partition: int, raws: list[RawRecord]) -> None:
        meta = await self.store.meta(partition)
        fresh = [raw for raw in raws if raw.offset > meta.applied.get(self._inputs[raw.topic], -1)]
        now = time.monotonic()
        clocks = self._clocks_of(partition, meta, now)
        events, refused = await self._decode(fresh, clocks, now)
        for name, clock in clocks.items():
            clock.caught_up = await self._consumer.caught_up(
                TopicPartition(self._topics[name], partition)
            )
        mark = watermark(
            list(clocks.values()),
            now=now,
            previous=meta.watermark,
            idle_after=self._settings.idle_after_seconds,
            allowed_lateness=self._lateness,
        )
        if not fresh and mark <= meta.watermark:
            return
        serve_ids = list(dict.fromkeys(event.serve_id for event in events))
        state = await self.store.load(
            partition, serve_ids, watermark=mark, max_due=self._settings.max_closes_per_batch
        )
        result = join(state, events, watermark=mark, click_grace=self._click_grace)
        result.refused[:0] = refused
        await self._producer.send_many(self._messages(result))
        for raw in fresh:
            name = self._inputs[raw.topic]
            meta.applied[name] = max(meta.applied.get(name, -1), raw.offset)
        meta.watermark = state.watermark
        meta.latest = {
            name: clock.latest_event
            for name, clock in clocks.items()
            if clock.latest_event is not None
        }
        await self.store.save(partition, state, meta)
        self._count(partition, result, state.watermark)

    def _clocks_of(self, partition: int, meta: JoinMeta, now: float) -> dict[str, InputClock]:
        clocks = self._clocks.get(partition)
        if clocks is None:
            clocks = self._clocks[partition] = {
                name: InputClock(meta.latest.get(name), now) for name in ("serves", "clicks")
            }
        return clocks

    async def _decode(
        self, raws: list[RawRecord], clocks: dict[str, InputClock], now: float
    ) -> tuple[list[ServeIn | ClickIn], list[Rejected]]:
        events: list[ServeIn | ClickIn] = []
        refused: list[Rejected] = []
        for raw in raws:
            name = self._inputs[raw.topic]
            clocks[name].last_delivery = now
            try:
                if name == "serves":
                    serve = self._decoders["serves"](raw.value)
                    assert isinstance(serve, ServeEvent)
                    event: ServeIn | ClickIn = await self._serve_in(serve, raw)
                else:
                    click = self._decoders["clicks"](raw.value)
                    assert isinstance(click, ClickEvent)
                    event = ClickIn(
                        click.serve_id,
                        click.item_id,
                        click.user_id,
                        to_micros(click.clicked_at),
                        raw,
                    )
            except InvalidEvent as exc:
                refused.append(Rejected.of(raw, exc))
                continue
            clocks[name].observe(
                event.served_at if isinstance(event, ServeIn) else event.clicked_at, now
            )
            events.append(event)
        return events, refused

    async def _serve_in(self, serve: ServeEvent, raw: RawRecord) -> ServeIn:
        experiment = await self._experiments.get(serve.experiment_id)
        if experiment is None:
            raise InvalidEvent(
                f"unknown experiment {serve.experiment_id!r}", code="invalid.experiment"
            )
        if experiment.config.variant(serve.variant) is None:
            raise InvalidEvent(
                f"experiment {serve.experiment_id!r} has no variant {serve.variant!r}",
                code="invalid.variant",
            )
        served_at = to_micros(serve.served_at)
        window = int(experiment.config.reward_window_hours * 3600 * MICROS)
        return ServeIn(
            serve.serve_id,
            serve.experiment_id,
            serve.variant,
            serve.policy_type,
            served_at,
            served_at + window,
            tuple((item.item_id, item.position, item.propensity) for item in serve.items),
            raw,
            serve.user_id,
            tuple(sorted(serve.cohort.items())),
        )

    def _messages(self, result: JoinResult) -> list[OutgoingMessage]:
        settings = self._settings
        messages = [_reward_message(settings.rewards_topic, reward) for reward in result.rewards]
        messages += [_late_message(settings.late_clicks_topic, late) for late in result.late]
        messages += [
            dead_letter_message(
                item, group=settings.consumer_group, topic=settings.dead_letter_topic
            )
            for item in result.refused
        ]
        return messages

    def _count(self, partition: int, result: JoinResult, mark: int) -> None:
        outcomes: dict[float, int] = {}
        for reward in result.rewards:
            outcomes[reward.reward] = outcomes.get(reward.reward, 0) + len(reward.items)
        for value, count in outcomes.items():
            metrics.OUTCOMES.labels(f"{value:g}").inc(count)
        metrics.LATE_CLICKS.inc(len(result.late))
        metrics.DUPLICATE_CLICKS.inc(result.duplicate_clicks)
        metrics.DUPLICATE_SERVES.inc(result.duplicate_serves)
        metrics.HELD_CLICKS.inc(result.held_clicks)
        delay = time.time() - mark / MICROS
        metrics.WATERMARK_DELAY.labels(str(partition)).set(delay)
        for item in result.refused:
            record_dead_letter(item)


def _isoformat(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_whole_seconds(seconds)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=4_096)
def _whole_seconds(seconds: int) -> str:
    # Serves and clicks of a batch share few distinct seconds: format each once.
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def _reward_message(topic: str, reward: RewardOut) -> OutgoingMessage:
    serve = reward.serve
    value = orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "serve_id": serve.serve_id,
            "experiment_id": serve.experiment_id,
            "variant": serve.variant,
            "policy_type": serve.policy_type,
            "items": [
                {"item_id": item, "position": position, "propensity": propensity, "reward": r}
                for item, position, propensity in reward.items
                for r in (reward.reward,)
            ],
            "user_id": serve.user_id or None,
            "cohort": dict(serve.cohort),
            "served_at": _isoformat(serve.served_at),
            "rewarded_at": _isoformat(reward.rewarded_at),
        }
    )
    return OutgoingMessage(topic, value, f"{serve.experiment_id}:{serve.variant}".encode())


def _late_message(topic: str, late: LateClickOut) -> OutgoingMessage:
    click = late.click
    value = orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "serve_id": click.serve_id,
            "experiment_id": late.experiment_id,
            "variant": late.variant,
            "item_id": click.item_id,
            "user_id": click.user_id,
            "clicked_at": _isoformat(click.clicked_at),
            "window_closed_at": _isoformat(late.window_end),
        }
    )
    return OutgoingMessage(topic, value, click.serve_id.encode())
