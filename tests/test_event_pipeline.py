"""An event crosses processes: common producer -> broker -> common consumer -> PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from cineamate.common.events import ClickEvent, DeadLetter
from cineamate.common.kafka import EventProducer, OutgoingMessage, ensure_topics
from cineamate.common.settings import TopicSpec
from cineamate.stack.testing import read_topic, unique

pytestmark = pytest.mark.integration

SINK = Path(__file__).parent / "helpers" / "click_sink.py"


def _click(index: int, item_id: int | None = None) -> ClickEvent:
    return ClickEvent(
        serve_id=f"serve-{index}",
        item_id=index if item_id is None else item_id,
        user_id=f"user-{index % 7}",
        clicked_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def _wait_for_rows(database_url: str, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        connection = await asyncpg.connect(database_url)
        try:
            count = await connection.fetchval("SELECT count(*) FROM sink_clicks")
        finally:
            await connection.close()
        if count >= expected:
            return int(count)
        await asyncio.sleep(0.2)
    return int(count)


async def test_event_crosses_processes_and_poison_is_dead_lettered(
    stack, fresh_database: str
) -> None:
    bootstrap = stack.kafka_bootstrap_servers
    topic, dead_topic = unique("clicks"), unique("dead-letter")
    await ensure_topics(bootstrap, [TopicSpec(topic, 3), TopicSpec(dead_topic, 1)])
    connection = await asyncpg.connect(fresh_database)
    await connection.execute(
        "CREATE TABLE sink_clicks (event_id text PRIMARY KEY, serve_id text, item_id int, "
        "user_id text, clicked_at timestamptz)"
    )
    await connection.close()

    env = dict(os.environ) | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": fresh_database,
        "SINK_TOPIC": topic,
        "SINK_GROUP": unique("sink"),
        "SINK_DEAD_LETTER_TOPIC": dead_topic,
    }
    sink = subprocess.Popen([sys.executable, str(SINK)], env=env, stdout=subprocess.DEVNULL)
    try:
        producer = EventProducer(bootstrap, client_id="pipeline-test")
        await producer.start()
        raw = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await raw.start()
        try:
            await producer.send_many(OutgoingMessage.of(topic, _click(i)) for i in range(50))
            # Three poison messages on one partition, each followed by good ones.
            await raw.send_and_wait(topic, b"{not json", key=b"serve-0", partition=0)
            wrong_version = (
                _click(1000).model_dump_json().replace('"schema_version":1', '"schema_version":99')
            )
            await raw.send_and_wait(topic, wrong_version.encode(), key=b"serve-0", partition=0)
            await producer.send(OutgoingMessage.of(topic, _click(2000, item_id=-5)))
            await producer.send_many(OutgoingMessage.of(topic, _click(i)) for i in range(50, 100))
        finally:
            await producer.stop()
            await raw.stop()

        assert await _wait_for_rows(fresh_database, 100, timeout=60) == 100
        letters = await read_topic(bootstrap, dead_topic, DeadLetter, expected=3)
    finally:
        sink.send_signal(signal.SIGTERM)
        exit_code = sink.wait(timeout=30)

    assert exit_code == 0
    assert sorted(letter.reason_code for letter in letters) == [
        "invalid.item",
        "invalid.json",
        "invalid.schema_version",
    ]
    by_code = {letter.reason_code: letter for letter in letters}
    assert base64.b64decode(by_code["invalid.json"].payload_b64) == b"{not json"
    assert "99" in by_code["invalid.schema_version"].reason
    for letter in letters:
        assert letter.source_topic == topic
        assert letter.source_offset >= 0
        assert letter.consumer_group == env["SINK_GROUP"]
    assert by_code["invalid.json"].source_partition == 0

    connection = await asyncpg.connect(fresh_database)
    try:
        rows = await connection.fetch("SELECT item_id FROM sink_clicks ORDER BY item_id")
    finally:
        await connection.close()
    assert [row["item_id"] for row in rows] == list(range(100))
