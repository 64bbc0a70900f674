"""The reward service against the real broker, PostgreSQL and Redis: bad messages are
dead-lettered with their reason and the stream goes on.

Its exact rewards when SIGKILLed in the middle of 100,000 events are checked with the
learner and the analytics service downstream, in tests/test_fault_recovery.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cineamate.common.events import (
    ClickEvent,
    DeadLetter,
    RewardEvent,
    ServedItem,
    ServeEvent,
)
from cineamate.common.experiments import ExperimentConfig, VariantConfig
from cineamate.common.kafka import OutgoingMessage
from cineamate.reward.synthetic import generate
from cineamate.stack.testing import (
    insert_running_experiment,
    produce,
    provision,
    read_topic,
    start_service,
    stop_service,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CATALOGUE = list(range(1, 201))
WINDOW = timedelta(seconds=5)
START = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Joiner:
    """A reward service environment with one running experiment."""

    env: dict[str, str]
    experiment_id: str
    logs: Path

    def start(self) -> subprocess.Popen[bytes]:
        return start_service(self.env, "reward", self.logs)

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    def topic(self, name: str) -> str:
        return self.env[f"CINEAMATE_{name.upper()}_TOPIC"]


@pytest.fixture
def joiner(isolated_env: dict[str, str], tmp_path: Path) -> Joiner:
    experiment_id = unique("exp")
    env = dict(isolated_env) | {
        "CINEAMATE_SERVES_PARTITIONS": "3",
        "CINEAMATE_CLICKS_PARTITIONS": "3",
        "CINEAMATE_REWARD_CONSUMER_GROUP": unique("reward"),
        "CINEAMATE_REWARD_IDLE_AFTER_SECONDS": "1",
        "CINEAMATE_REWARD_ALLOWED_LATENESS_SECONDS": "1",
        "CINEAMATE_REWARD_CLICK_GRACE_SECONDS": "2",
        "CINEAMATE_MAX_MESSAGE_BYTES": "8192",
    }
    provision(env)
    config = ExperimentConfig(
        name="reward test",
        catalogue=CATALOGUE,
        reward_window_hours=WINDOW.total_seconds() / 3600,
        policies=[
            VariantConfig(name="ts", type="thompson"),
            VariantConfig(name="control", type="random", control=True),
        ],
    )
    asyncio.run(insert_running_experiment(env["DATABASE_URL"], experiment_id, config))
    return Joiner(env, experiment_id, tmp_path)


async def _collect(
    bootstrap: str, topic: str, *, expected_ids: int, timeout: float
) -> dict[str, list[float]]:
    """Every outcome on the rewards topic by id (all values seen), once ``expected_ids``
    distinct ids arrived and a little longer, so anything extra would show."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: dict[str, list[float]] = defaultdict(list)
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    reward = RewardEvent.model_validate_json(message.value)
                    for reward_id, item in zip(reward.reward_ids, reward.items, strict=True):
                        seen[reward_id].append(item.reward)
            if len(seen) >= expected_ids and settle_until is None:
                settle_until = time.monotonic() + 3.0
            if settle_until is not None and time.monotonic() > settle_until:
                break
    finally:
        await consumer.stop()
    return seen


async def test_bad_messages_are_dead_lettered_and_the_stream_goes_on(joiner: Joiner) -> None:
    stream = generate(
        joiner.experiment_id,
        serves=200,
        variants=("ts", "control"),
        catalogue=CATALOGUE,
        start=START,
        window=WINDOW,
        spacing=timedelta(milliseconds=50),
        slate_size=5,
        click_rate=0.2,
        late_rate=0.0,
        seed=3,
    )
    first = stream.events[0]
    assert isinstance(first, ServeEvent)
    unknown_experiment = first.model_copy(
        update={"serve_id": "x-experiment", "experiment_id": "nope"}
    )
    oversized = first.model_copy(
        update={
            "serve_id": "x-huge",
            "items": [ServedItem(item_id=i, position=i, propensity=0.5) for i in range(400)],
        }
    )
    off_slate = ClickEvent(
        serve_id=first.serve_id, item_id=10_000, user_id="u", clicked_at=first.served_at
    )
    orphan = ClickEvent(serve_id="never-served", item_id=1, user_id="u", clicked_at=START)
    serves, clicks = joiner.topic("serves"), joiner.topic("clicks")

    raw = AIOKafkaProducer(bootstrap_servers=joiner.bootstrap)
    await raw.start()
    try:
        await raw.send_and_wait(serves, b"\x00not json", key=b"x-garbage")
        wrong_version = orjson.loads(first.model_dump_json()) | {"schema_version": 9}
        await raw.send_and_wait(serves, orjson.dumps(wrong_version), key=b"x-version")
    finally:
        await raw.stop()
    bad = [
        OutgoingMessage.of(serves, unknown_experiment),
        OutgoingMessage.of(serves, oversized),
        OutgoingMessage.of(clicks, orphan),
    ]
    await produce(joiner.bootstrap, bad + stream.messages(serves, clicks))
    await produce(joiner.bootstrap, [OutgoingMessage.of(clicks, off_slate)])

    service = joiner.start()
    try:
        seen = await _collect(
            joiner.bootstrap,
            joiner.topic("rewards"),
            expected_ids=len(stream.outcomes),
            timeout=120,
        )
        letters = await read_topic(
            joiner.bootstrap, joiner.topic("dead_letter"), DeadLetter, expected=6, timeout=60
        )
    finally:
        stop_service(service)

    assert {reward_id: values[0] for reward_id, values in seen.items()} == stream.outcomes
    assert sorted(letter.reason_code for letter in letters) == [
        "invalid.click_item",
        "invalid.click_orphan",
        "invalid.experiment",
        "invalid.json",
        "invalid.schema_version",
        "invalid.too_large",
    ]
    orphaned = next(letter for letter in letters if letter.reason_code == "invalid.click_orphan")
    assert ClickEvent.model_validate_json(orphaned.payload()).serve_id == "never-served"
