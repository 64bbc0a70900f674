"""Producer, consumer loop and topic provisioning against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import redis.exceptions

from cineamate.common.errors import DependencyUnavailable, InvalidEvent
from cineamate.common.events import ClickEvent, DeadLetter
from cineamate.common.kafka import (
    BatchConsumer,
    EventProducer,
    OutgoingMessage,
    Record,
    Rejected,
    ensure_topics,
    json_decoder,
    topic_partitions,
)
from cineamate.common.settings import TopicSpec
from cineamate.stack.testing import read_topic, unique

pytestmark = pytest.mark.integration


def _click(index: int) -> ClickEvent:
    return ClickEvent(
        serve_id=f"s{index}",
        item_id=index,
        user_id="u",
        clicked_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_ensure_topics_creates_missing_topics_once(stack) -> None:
    bootstrap = stack.kafka_bootstrap_servers
    specs = [TopicSpec(unique("a"), 3), TopicSpec(unique("b"), 1)]
    created = await ensure_topics(bootstrap, specs)
    again = await ensure_topics(bootstrap, specs)
    assert created == [spec.name for spec in specs]
    assert again == []
    assert await topic_partitions(bootstrap, specs[0].name) == 3


async def test_published_messages_are_all_delivered(stack) -> None:
    bootstrap = stack.kafka_bootstrap_servers
    topic = unique("published")
    await ensure_topics(bootstrap, [TopicSpec(topic, 2)])
    producer = EventProducer(bootstrap, client_id="t", buffer_limit=10_000)
    await producer.start()
    try:
        accepted = [producer.publish(OutgoingMessage.of(topic, _click(i))) for i in range(2_000)]
        await producer.flush()
    finally:
        await producer.stop()
    assert all(accepted)
    delivered = await read_topic(bootstrap, topic, ClickEvent, expected=2_000)
    assert sorted(e.item_id for e in delivered) == list(range(2_000))


async def test_publish_refuses_when_the_buffer_is_full(stack) -> None:
    producer = EventProducer(stack.kafka_bootstrap_servers, client_id="t", buffer_limit=3)
    # Not started: nothing drains the buffer.
    results = [producer.publish(OutgoingMessage("x", b"{}")) for _ in range(5)]
    assert results == [True, True, True, False, False]


def _click_consumer(
    bootstrap: str,
    topic: str,
    group: str,
    handle: Callable[[list[Record[ClickEvent]]], Awaitable[Sequence[Rejected]]],
    producer: EventProducer,
    dead_letter_topic: str,
) -> BatchConsumer[ClickEvent]:
    return BatchConsumer(
        bootstrap_servers=bootstrap,
        topics=[topic],
        group_id=group,
        decode=json_decoder(ClickEvent, max_bytes=10_000),
        handle=handle,
        dead_letters=producer,
        dead_letter_topic=dead_letter_topic,
    )


async def _run_consumer_until(consumer: BatchConsumer[ClickEvent], done: asyncio.Event) -> None:
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await consumer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_record_that_crashes_the_handler_is_dead_lettered_and_the_rest_processed(
    stack,
) -> None:
    bootstrap = stack.kafka_bootstrap_servers
    topic, dead = unique("in"), unique("dead")
    await ensure_topics(bootstrap, [TopicSpec(topic, 1), TopicSpec(dead, 1)])
    producer = EventProducer(bootstrap, client_id="t")
    await producer.start()
    processed: set[int] = set()
    done = asyncio.Event()

    async def handle(records: list[Record[ClickEvent]]) -> Sequence[Rejected]:
        if any(r.event.item_id == 13 for r in records):
            raise ZeroDivisionError("unlucky item")
        processed.update(r.event.item_id for r in records)
        if len(processed) == 29:
            done.set()
        return []

    try:
        await producer.send_many(OutgoingMessage.of(topic, _click(i)) for i in range(30))
        consumer = _click_consumer(bootstrap, topic, unique("g"), handle, producer, dead)
        await _run_consumer_until(consumer, done)
        letters = await read_topic(bootstrap, dead, DeadLetter, expected=1)
    finally:
        await producer.stop()
    assert processed == set(range(30)) - {13}
    assert [(letter.reason_code, letter.source_offset) for letter in letters] == [
        ("error.processing", 13)
    ]
    assert "ZeroDivisionError: unlucky item" in letters[0].reason


@pytest.mark.parametrize(
    "outage",
    [
        DependencyUnavailable("postgres: down for a moment"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        ConnectionRefusedError(111, "Connect call failed"),
    ],
    ids=["translated", "redis", "postgres-shutdown", "refused"],
)
async def test_an_outage_retries_the_batch_without_dead_letters(stack, outage: Exception) -> None:
    bootstrap = stack.kafka_bootstrap_servers
    topic, dead = unique("in"), unique("dead")
    await ensure_topics(bootstrap, [TopicSpec(topic, 1), TopicSpec(dead, 1)])
    producer = EventProducer(bootstrap, client_id="t")
    await producer.start()
    attempts = 0
    seen: list[int] = []
    done = asyncio.Event()

    async def handle(records: list[Record[ClickEvent]]) -> Sequence[Rejected]:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise outage
        seen.extend(r.event.item_id for r in records)
        if len(seen) >= 10:
            done.set()
        return []

    try:
        await producer.send_many(OutgoingMessage.of(topic, _click(i)) for i in range(10))
        consumer = _click_consumer(bootstrap, topic, unique("g"), handle, producer, dead)
        await _run_consumer_until(consumer, done)
    finally:
        await producer.stop()
    assert attempts >= 4
    assert sorted(seen) == list(range(10))


async def test_committed_offsets_resume_where_the_last_member_stopped(stack) -> None:
    bootstrap = stack.kafka_bootstrap_servers
    topic, dead, group = unique("in"), unique("dead"), unique("g")
    await ensure_topics(bootstrap, [TopicSpec(topic, 1), TopicSpec(dead, 1)])
    producer = EventProducer(bootstrap, client_id="t")
    await producer.start()
    seen: list[int] = []

    def consumer_for(expected: int, done: asyncio.Event) -> BatchConsumer[ClickEvent]:
        async def handle(records: list[Record[ClickEvent]]) -> Sequence[Rejected]:
            seen.extend(r.event.item_id for r in records)
            if len(seen) >= expected:
                done.set()
            return []

        return _click_consumer(bootstrap, topic, group, handle, producer, dead)

    try:
        await producer.send_many(OutgoingMessage.of(topic, _click(i)) for i in range(20))
        first = asyncio.Event()
        await _run_consumer_until(consumer_for(20, first), first)
        await producer.send_many(OutgoingMessage.of(topic, _click(i)) for i in range(20, 30))
        second = asyncio.Event()
        await _run_consumer_until(consumer_for(30, second), second)
    finally:
        await producer.stop()
    assert seen == list(range(30))


def _label(value: bytes | None) -> str:
    text = (value or b"").decode()
    if not text.startswith("label-"):
        raise InvalidEvent(f"not a label: {text!r}", code="invalid.label")
    return text


async def test_an_overlapped_consumer_decodes_per_topic_and_handles_one_batch_at_a_time(
    stack,
) -> None:
    bootstrap = stack.kafka_bootstrap_servers
    clicks, labels, dead, group = unique("clicks"), unique("labels"), unique("dead"), unique("g")
    await ensure_topics(bootstrap, [TopicSpec(t, 1) for t in (clicks, labels, dead)])
    producer = EventProducer(bootstrap, client_id="t")
    await producer.start()
    seen: list[tuple[str, Any]] = []
    running = 0
    most_running = 0

    def consumer_for(expected: int, done: asyncio.Event) -> BatchConsumer[Any]:
        async def handle(records: list[Record[Any]]) -> Sequence[Rejected]:
            nonlocal running, most_running
            running += 1
            most_running = max(most_running, running)
            await asyncio.sleep(0.01)  # the next batch is fetched and decoded meanwhile
            seen.extend((record.raw.topic, record.event) for record in records)
            running -= 1
            if len(seen) >= expected:
                done.set()
            return []

        return BatchConsumer(
            bootstrap_servers=bootstrap,
            topics=[clicks, labels],
            group_id=group,
            decode={clicks: json_decoder(ClickEvent, max_bytes=10_000), labels: _label},
            handle=handle,
            dead_letters=producer,
            dead_letter_topic=dead,
            max_records=7,
            overlap=True,
        )

    try:
        await producer.send_many(OutgoingMessage.of(clicks, _click(i)) for i in range(30))
        await producer.send_many(
            [OutgoingMessage(labels, f"label-{i}".encode()) for i in range(15)]
            + [OutgoingMessage(labels, b"oops")]
            + [OutgoingMessage(labels, f"label-{i}".encode()) for i in range(15, 30)]
        )
        first = asyncio.Event()
        await _run_consumer_until(consumer_for(60, first), first)
        letters = await read_topic(bootstrap, dead, DeadLetter, expected=1)
        # Everything was committed: a new member of the group gets only what comes next.
        await producer.send_many([OutgoingMessage.of(clicks, _click(30))])
        second = asyncio.Event()
        await _run_consumer_until(consumer_for(61, second), second)
    finally:
        await producer.stop()

    assert most_running == 1
    assert [event.item_id for topic, event in seen if topic == clicks] == list(range(31))
    assert [event for topic, event in seen if topic == labels] == [f"label-{i}" for i in range(30)]
    assert [(letter.reason_code, letter.source_offset) for letter in letters] == [
        ("invalid.label", 15)
    ]
