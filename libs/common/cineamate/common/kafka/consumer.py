"""The batch consumer loop every consuming service runs.

One pass of the loop has named stages, and the commit is last by construction:

    fetch       getmany(): up to ``max_records`` records across the assigned partitions
    decode      bytes -> event model; undecodable or invalid records are rejected
    process     the service's handler, on the valid records; it may reject more
    dead-letter rejected records go to the dead-letter topic, acknowledged
    commit      the offsets after the last record of each partition

A failure in ``process`` never commits: a retriable error retries the batch
with backoff; any other error retries record by record and dead-letters the
records that still fail, so one poison message cannot stall a partition.
Handlers must be idempotent, because a crash between process and commit
redelivers the batch.

With ``overlap``, the next batch is fetched and decoded while the handler of
the previous one waits on its store, so decoding (CPU in this process) and
writing (work in the store's process) run side by side; batches are still
processed and committed one at a time, in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import TypeAdapter, ValidationError

from cineamate.common.errors import CineamateError, DependencyUnavailable, InvalidEvent
from cineamate.common.events import SCHEMA_VERSION, DeadLetter, utc_now
from cineamate.common.kafka.producer import EventProducer, OutgoingMessage
from cineamate.common.metrics import (
    CONSUMER_BATCH_SIZE,
    CONSUMER_FAILURES,
    CONSUMER_LAG,
    CONSUMER_PROCESSING_SECONDS,
    CONSUMER_RECORDS,
    DEAD_LETTERS,
)
from cineamate.common.outages import is_outage

__all__ = [
    "BatchConsumer",
    "Decoder",
    "RawRecord",
    "Record",
    "Rejected",
    "dead_letter_message",
    "json_decoder",
    "record_dead_letter",
    "undecoded",
]

EventT = TypeVar("EventT")

_log = logging.getLogger(__name__)

# Records decoded between two turns of the event loop while a batch is in flight: a few
# milliseconds of work, so the batch's statements wait little for their turn.
_DECODE_SLICE = 64
# Dead letters keep at most this much of an oversized payload.
_DEAD_LETTER_PAYLOAD_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as fetched, before decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Record(Generic[EventT]):
    """A decoded record: the event and where it came from."""

    raw: RawRecord
    event: EventT


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that will be dead-lettered instead of processed."""

    raw: RawRecord
    code: str
    reason: str

    @classmethod
    def of(cls, record: Record[Any] | RawRecord, error: CineamateError) -> Rejected:
        raw = record.raw if isinstance(record, Record) else record
        return cls(raw, error.code, error.message)


Decoder = Callable[[bytes | None], EventT]
BatchHandler = Callable[[list[Record[EventT]]], Awaitable[Sequence[Rejected]]]
IdleHandler = Callable[[], Awaitable[None]]
AssignedHandler = Callable[[set[TopicPartition]], None]


def undecoded(value: bytes | None) -> bytes | None:
    """The identity decoder: for handlers that decode per topic themselves."""
    return value


def json_decoder(schema: type[EventT] | TypeAdapter[EventT], *, max_bytes: int) -> Decoder[EventT]:
    """Decoder of JSON events into ``schema`` with size, JSON, version and field checks."""
    adapter: TypeAdapter[EventT] = (
        schema if isinstance(schema, TypeAdapter) else TypeAdapter(schema)
    )

    def decode(value: bytes | None) -> EventT:
        if value is None:
            raise InvalidEvent("message has no value", code="invalid.empty")
        if len(value) > max_bytes:
            raise InvalidEvent(
                f"message of {len(value)} bytes exceeds the limit of {max_bytes}",
                code="invalid.too_large",
            )
        try:
            event = adapter.validate_json(value)
        except ValidationError:
            pass  # classified precisely below; valid messages never get there
        else:
            # A message must state its version (Python code may leave it to the default).
            # Checked here rather than by a model validator, which would make pydantic
            # build Python objects from the JSON first: twice the cost per message.
            if "schema_version" in getattr(event, "model_fields_set", ()):
                return event
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"not JSON: {exc}", code="invalid.json") from exc
        if not isinstance(data, dict):
            raise InvalidEvent("expected a JSON object", code="invalid.schema")
        version = data.get("schema_version")
        # `true` and `1.0` compare equal to 1 in Python but are not the version number.
        if type(version) is not int or version != SCHEMA_VERSION:
            raise InvalidEvent(
                f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})",
                code="invalid.schema_version",
            )
        try:
            return adapter.validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise InvalidEvent(f"{where}: {first['msg']}", code="invalid.schema") from exc

    return decode


def record_dead_letter(item: Rejected) -> None:
    """Count and log a record once its dead letter is acknowledged."""
    DEAD_LETTERS.labels(item.raw.topic, item.code).inc()
    _log.warning(
        "dead-lettered",
        extra={
            "topic": item.raw.topic,
            "partition": item.raw.partition,
            "offset": item.raw.offset,
            "reason_code": item.code,
            "reason": item.reason,
        },
    )


def dead_letter_message(item: Rejected, *, group: str, topic: str) -> OutgoingMessage:
    """The dead letter of a rejected record: its bytes (truncated if huge), origin and reason."""
    payload = item.raw.value or b""
    letter = DeadLetter(
        source_topic=item.raw.topic,
        source_partition=item.raw.partition,
        source_offset=item.raw.offset,
        consumer_group=group,
        reason_code=item.code,
        reason=item.reason,
        key_b64=base64.b64encode(item.raw.key).decode() if item.raw.key else None,
        payload_b64=base64.b64encode(payload[:_DEAD_LETTER_PAYLOAD_LIMIT]).decode(),
        payload_truncated=len(payload) > _DEAD_LETTER_PAYLOAD_LIMIT,
        payload_size=len(payload),
        dead_lettered_at=utc_now(),
    )
    return OutgoingMessage(topic, letter.model_dump_json().encode(), item.raw.key)


class BatchConsumer(Generic[EventT]):
    """Consumer group member that runs fetch, decode, process, dead-letter, commit.

    >>> consumer = BatchConsumer(  # doctest: +SKIP
    ...     bootstrap_servers="127.0.0.1:9092", topics=["clicks"], group_id="reward",
    ...     decode=json_decoder(ClickEvent, max_bytes=1_000_000), handle=join_clicks,
    ...     dead_letters=producer, dead_letter_topic="dead-letter")
    >>> await consumer.start(); await consumer.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: Sequence[str],
        group_id: str,
        decode: Decoder[EventT] | Mapping[str, Decoder[EventT]],
        handle: BatchHandler[EventT],
        dead_letters: EventProducer,
        dead_letter_topic: str,
        max_records: int = 2_000,
        poll_timeout_ms: int = 200,
        retry_max_seconds: float = 10.0,
        auto_offset_reset: str = "earliest",
        on_idle: IdleHandler | None = None,
        on_assigned: AssignedHandler | None = None,
        overlap: bool = False,
    ) -> None:
        """``decode`` is one decoder for every topic, or one per topic."""
        self._topics = list(topics)
        self._group_id = group_id
        self._decoders: Mapping[str, Decoder[EventT]] = (
            decode if isinstance(decode, Mapping) else dict.fromkeys(self._topics, decode)
        )
        self._overlap = overlap
        self._handle = handle
        self._dead_letters = dead_letters
        self._dead_letter_topic = dead_letter_topic
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_max_seconds = retry_max_seconds
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._on_idle = on_idle
        self._on_assigned = on_assigned
        self._batch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect and join the group."""
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise DependencyUnavailable(f"kafka: {exc}", code="unavailable.kafka") from exc
        listener = _FinishBatchOnRevoke(self._batch_lock, self._on_assigned)
        self._consumer.subscribe(self._topics, listener=listener)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member holds now."""
        return set(self._consumer.assignment())

    async def caught_up(self, partition: TopicPartition) -> bool:
        """Whether every record of ``partition`` the broker last reported has been handed
        to the handler (False while that is unknown)."""
        highwater = self._consumer.highwater(partition)
        if highwater is None or partition not in self._consumer.assignment():
            return False
        return bool(await self._consumer.position(partition) >= highwater)

    def request_stop(self) -> None:
        """Ask the loop to finish its batch and return."""
        self._stopping.set()

    async def stop(self) -> None:
        """Finish the batch in flight, then leave the group."""
        self.request_stop()
        async with self._batch_lock:
            await self._consumer.stop()

    async def run(self) -> None:
        """Process batches until ``request_stop``."""
        in_flight: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                fetched = await self._consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                )
                if not fetched:
                    in_flight = await _settled(in_flight)
                    await self._idle()
                    continue
                decoded = await self._decode_all(fetched, yielding=in_flight is not None)
                in_flight = await _settled(in_flight)
                if self._stopping.is_set():
                    return  # the decoded batch stays uncommitted: redelivered later
                in_flight = asyncio.create_task(self._process_batch(fetched, *decoded))
                if not self._overlap:
                    in_flight = await _settled(in_flight)
        except _Abandoned:
            # Stopping while a dependency is down: leave the batch uncommitted.
            return
        finally:
            if in_flight is not None and not in_flight.done():
                with contextlib.suppress(_Abandoned):
                    await in_flight

    async def _idle(self) -> None:
        # A poll with nothing to fetch: time-driven work (closing windows) runs here.
        if self._on_idle is None:
            return
        async with self._batch_lock:
            try:
                await self._on_idle()
            except DependencyUnavailable as exc:
                _log.warning("idle work failed", extra={"group": self._group_id, "error": str(exc)})
            except Exception:
                _log.exception("idle work error", extra={"group": self._group_id})

    async def _decode_all(
        self, fetched: dict[TopicPartition, list[Any]], *, yielding: bool
    ) -> tuple[list[Record[EventT]], list[Rejected]]:
        """Decode the batch; ``yielding`` gives the event loop a turn every few records, so
        the batch in flight can send its next statement while this one decodes."""
        records: list[Record[EventT]] = []
        rejected: list[Rejected] = []
        for messages in fetched.values():
            for number, m in enumerate(messages):
                if yielding and number % _DECODE_SLICE == 0:
                    await asyncio.sleep(0)
                raw = RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
                try:
                    records.append(Record(raw, self._decoders[raw.topic](raw.value)))
                except InvalidEvent as exc:
                    rejected.append(Rejected.of(raw, exc))
        return records, rejected

    async def _process_batch(
        self,
        fetched: dict[TopicPartition, list[Any]],
        records: list[Record[EventT]],
        rejected: list[Rejected],
    ) -> None:
        async with self._batch_lock:
            started = time.perf_counter()
            rejected = rejected + await self._process(records)
            await self._dead_letter(rejected)
            await self._commit(fetched)
            CONSUMER_BATCH_SIZE.labels(self._group_id).observe(len(records) + len(rejected))
            CONSUMER_PROCESSING_SECONDS.labels(self._group_id).observe(
                time.perf_counter() - started
            )

    async def _process(self, records: list[Record[EventT]]) -> list[Rejected]:
        if not records:
            return []
        try:
            return list(await self._retrying(lambda: self._handle(records)))
        except _NotRetriable:
            pass
        # Find the poison records one by one; the others are processed normally.
        rejected: list[Rejected] = []
        for record in records:
            try:
                rejected.extend(await self._retrying(functools.partial(self._handle, [record])))
            except _NotRetriable as failure:
                error = failure.__cause__
                rejected.append(
                    Rejected(record.raw, "error.processing", f"{type(error).__name__}: {error}")
                )
        return rejected

    async def _retrying(
        self, attempt: Callable[[], Awaitable[Sequence[Rejected]]]
    ) -> Sequence[Rejected]:
        delay = 0.1
        while True:
            try:
                return await attempt()
            except Exception as exc:
                CONSUMER_FAILURES.labels(self._group_id).inc()
                if not is_outage(exc):
                    _log.exception("batch processing error", extra={"group": self._group_id})
                    raise _NotRetriable() from exc
                _log.warning(
                    "batch failed, retrying",
                    extra={"group": self._group_id, "error": str(exc), "retry_in_s": delay},
                )
            if self._stopping.is_set():
                raise _Abandoned()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._retry_max_seconds)

    async def _dead_letter(self, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        messages = [self._envelope(item) for item in rejected]
        await self._retrying(lambda: _send_all(self._dead_letters, messages))
        for item in rejected:
            record_dead_letter(item)

    def _envelope(self, item: Rejected) -> OutgoingMessage:
        return dead_letter_message(item, group=self._group_id, topic=self._dead_letter_topic)

    async def _commit(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        offsets = {tp: messages[-1].offset + 1 for tp, messages in fetched.items() if messages}
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved to another member, which redelivers from the last commit.
            _log.warning("commit failed after rebalance", extra={"error": str(exc)})
            return
        for tp, messages in fetched.items():
            CONSUMER_RECORDS.labels(self._group_id, tp.topic).inc(len(messages))
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(self._group_id, tp.topic, str(tp.partition)).set(
                    max(highwater - offsets[tp], 0)
                )


async def _settled(task: asyncio.Task[None] | None) -> asyncio.Task[None] | None:
    """Wait for the batch in flight, if any, letting its exception through; then there is
    none in flight (None)."""
    if task is not None:
        await task
    return None


class _NotRetriable(Exception):
    """Internal: the handler failed with an error that retrying will not fix."""


class _Abandoned(Exception):
    """Internal: a stop was requested while the batch could not be completed."""


async def _send_all(producer: EventProducer, messages: list[OutgoingMessage]) -> Sequence[Rejected]:
    await producer.send_many(messages)
    return ()


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in flight commit before its partitions move to another member."""

    def __init__(self, batch_lock: asyncio.Lock, on_assigned: AssignedHandler | None) -> None:
        self._batch_lock = batch_lock
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._batch_lock:
            return

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._on_assigned is not None:
            self._on_assigned(set(assigned))
