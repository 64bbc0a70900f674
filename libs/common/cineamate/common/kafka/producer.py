"""Batching producer over aiokafka.

Two ways to send:

* ``await send_many([...])`` and ``await send(...)`` wait until the broker
  acknowledged every message. Consumers use them for their outputs and dead
  letters, because they may only commit their input once the output is safe.
* ``publish(...)`` returns at once: the message joins a bounded in-process
  buffer that a background task hands to the broker every
  ``publish_interval_ms``, as one record batch per partition. Request paths use
  it so that no answer waits for the broker. It returns False when the buffer
  is full; the caller decides what to do (spool, count).

Handing published messages over in batches is what makes them cheap: one
``send()`` per message costs a future, a callback and a partitioner call each,
and a short linger sends a produce request every few milliseconds. Messages
keep the partition ``send()`` would give them (aiokafka's default partitioner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from cineamate.common.errors import DependencyUnavailable
from cineamate.common.events import Event, encode
from cineamate.common.metrics import PRODUCER_BUFFERED, PRODUCER_FAILURES, PRODUCER_SENT

__all__ = ["EventProducer", "OutgoingMessage"]

_log = logging.getLogger(__name__)


# topic, partition, record batch, the messages it holds
_Batch = tuple[str, int, Any, list["OutgoingMessage"]]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message ready for the wire."""

    topic: str
    value: bytes
    key: bytes | None = None

    @classmethod
    def of(cls, topic: str, event: Event) -> OutgoingMessage:
        return cls(topic, encode(event), event.partition_key.encode())


class EventProducer:
    """Producer with linger batching, acknowledged sends and a bounded fire-and-forget buffer.

    >>> producer = EventProducer("127.0.0.1:9092", client_id="assignment")  # doctest: +SKIP
    >>> await producer.start()  # doctest: +SKIP
    >>> await producer.send(OutgoingMessage.of("serves", serve))  # doctest: +SKIP
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        linger_ms: int = 5,
        max_batch_bytes: int = 262_144,
        buffer_limit: int = 100_000,
        request_timeout_ms: int = 10_000,
        publish_interval_ms: int = 50,
        handover_timeout_ms: int = 1_000,
        on_undelivered: Callable[[OutgoingMessage], None] | None = None,
    ) -> None:
        # Built in start(): an aiokafka producer binds to the running event loop.
        self._config = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_bytes,
            "acks": "all",
            "request_timeout_ms": request_timeout_ms,
        }
        self._producer: AIOKafkaProducer | None = None
        # Receives published messages the broker never acknowledged.
        self.on_undelivered = on_undelivered
        self._buffer: asyncio.Queue[OutgoingMessage] = asyncio.Queue(maxsize=buffer_limit)
        self._drainer: asyncio.Task[None] | None = None
        self._publish_interval = publish_interval_ms / 1000
        # A hand-over waits while the partition's previous batch is still undrained; past
        # this, the broker is not keeping up and the messages count as undelivered.
        self._handover_timeout = handover_timeout_ms / 1000
        self._partitioner = DefaultPartitioner()

    @property
    def client(self) -> object:
        """The underlying aiokafka client (metadata checks)."""
        return self._started().client

    async def start(self) -> None:
        producer = AIOKafkaProducer(**self._config)
        try:
            await producer.start()
        except KafkaError as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise DependencyUnavailable(f"kafka: {exc}", code="unavailable.kafka") from exc
        self._producer = producer
        self._drainer = asyncio.create_task(self._drain(), name="producer-drain")

    async def stop(self) -> None:
        """Deliver what is buffered, then close."""
        if self._drainer is not None:
            await self._buffer.join()
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise DependencyUnavailable("kafka: producer not started", code="unavailable.kafka")
        return self._producer

    async def send(self, message: OutgoingMessage) -> None:
        """Send one message and wait for the broker's acknowledgement."""
        await self.send_many([message])

    async def send_many(self, messages: Iterable[OutgoingMessage]) -> None:
        """Send messages as one record batch per partition and wait until all are
        acknowledged; DependencyUnavailable if any is not."""
        producer = self._started()
        batches, refused = await self._batches(list(messages))
        failure: BaseException | None = refused[0][1] if refused else None
        deliveries: list[tuple[str, int, asyncio.Future[object]]] = []
        if failure is None:
            try:
                for topic, partition, batch, included in batches:
                    delivery = await producer.send_batch(batch, topic, partition=partition)
                    deliveries.append((topic, len(included), delivery))
            except KafkaError as exc:
                failure = exc
        for topic, count, delivery in deliveries:
            try:
                await delivery
                PRODUCER_SENT.labels(topic).inc(count)
            except KafkaError as exc:
                PRODUCER_FAILURES.labels(topic).inc(count)
                failure = failure or exc
        if failure is not None:
            raise DependencyUnavailable(
                f"kafka: send failed: {failure}", code="unavailable.kafka"
            ) from failure

    async def _batches(
        self, messages: list[OutgoingMessage]
    ) -> tuple[list[_Batch], list[tuple[OutgoingMessage, KafkaError]]]:
        """``messages`` as record batches, one per partition (more when one fills up), each
        with the messages it holds, partitions as ``send()`` would choose them; and the
        messages no batch can take (no metadata for the topic, or larger than a batch)."""
        producer = self._started()
        by_partition: dict[tuple[str, int], list[OutgoingMessage]] = {}
        partitions: dict[str, list[int]] = {}
        refused: list[tuple[OutgoingMessage, KafkaError]] = []
        for message in messages:
            topic = message.topic
            try:
                if topic not in partitions:
                    partitions[topic] = sorted(await producer.partitions_for(topic))
            except KafkaError as exc:
                refused.append((message, exc))
                continue
            every = partitions[topic]
            partition = self._partitioner(message.key, every, every)
            by_partition.setdefault((topic, partition), []).append(message)
        batches: list[_Batch] = []
        for (topic, partition), group in by_partition.items():
            batch = producer.create_batch()
            included: list[OutgoingMessage] = []
            for message in group:
                if batch.append(key=message.key, value=message.value, timestamp=None) is None:
                    if included:
                        batches.append((topic, partition, batch, included))
                        batch, included = producer.create_batch(), []
                    if batch.append(key=message.key, value=message.value, timestamp=None) is None:
                        refused.append((message, KafkaError(f"larger than a batch of {topic}")))
                        continue
                included.append(message)
            if included:
                batches.append((topic, partition, batch, included))
        return batches, refused

    def publish(self, message: OutgoingMessage) -> bool:
        """Buffer a message for background delivery; False when the buffer is full."""
        try:
            self._buffer.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    async def flush(self) -> None:
        """Wait until every published message has been handed over and acknowledged."""
        await self._buffer.join()
        await self._started().flush()

    async def _drain(self) -> None:
        buffer = self._buffer
        while True:
            messages = [await buffer.get()]
            # Let an interval's messages gather, so that they leave as a few batches.
            await asyncio.sleep(self._publish_interval)
            while not buffer.empty():
                messages.append(buffer.get_nowait())
            PRODUCER_BUFFERED.set(len(messages))
            try:
                await self._hand_over(messages)
            finally:
                for _ in messages:
                    buffer.task_done()
                PRODUCER_BUFFERED.set(buffer.qsize())

    async def _hand_over(self, messages: list[OutgoingMessage]) -> None:
        """Give ``messages`` to the producer as one record batch per partition (more when a
        batch fills up); whatever cannot be handed over counts as undelivered."""
        batches, refused = await self._batches(messages)
        for message, error in refused:
            _log.warning("publish failed", extra={"topic": message.topic, "error": str(error)})
            self._undelivered(message)
        for topic, partition, batch, included in batches:
            await self._send_batch(batch, topic, partition, included)

    async def _send_batch(
        self, batch: object, topic: str, partition: int, messages: list[OutgoingMessage]
    ) -> None:
        try:
            delivery = await asyncio.wait_for(
                self._started().send_batch(batch, topic, partition=partition),
                self._handover_timeout,
            )
        except (KafkaError, TimeoutError) as exc:
            _log.warning("publish failed", extra={"topic": topic, "error": repr(exc)})
            for message in messages:
                self._undelivered(message)
            return
        delivery.add_done_callback(lambda f: self._delivered(f, topic, messages))

    def _delivered(
        self, future: asyncio.Future[object], topic: str, messages: list[OutgoingMessage]
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            for message in messages:
                self._undelivered(message)
        else:
            PRODUCER_SENT.labels(topic).inc(len(messages))

    def _undelivered(self, message: OutgoingMessage) -> None:
        PRODUCER_FAILURES.labels(message.topic).inc()
        if self.on_undelivered is not None:
            self.on_undelivered(message)
