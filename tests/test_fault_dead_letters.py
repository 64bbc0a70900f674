"""Poison messages on every topic the analytics service consumes are dead-lettered with
their reason while the good events around them are counted.

The reward service's and the learner's own tests do the same for ``serves`` and
``rewards`` (services/reward/tests, services/policy/tests).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from cineamate.common.events import ClickEvent, DeadLetter, LateClick, PosteriorUpdate, ServeEvent
from cineamate.common.experiments import ExperimentConfig, VariantConfig
from cineamate.reward.synthetic import generate
from cineamate.stack.testing import (
    insert_running_experiment,
    produce,
    provision,
    read_topic,
    start_service,
    stop_service,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=5)


async def _serves_counted(database_url: str, experiment_id: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT coalesce(sum(serves), 0) FROM analytics_variant_totals "
                "WHERE experiment_id = $1",
                experiment_id,
            )
        )
    finally:
        await connection.close()


def test_analytics_dead_letters_poison_on_every_topic_and_goes_on(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = isolated_env | {
        "CINEAMATE_ANALYTICS_CONSUMER_GROUP": unique("analytics"),
        "CINEAMATE_MAX_MESSAGE_BYTES": "8192",
    }
    provision(env)
    experiment_id = unique("exp")
    config = ExperimentConfig(
        name="dead letters",
        catalogue=list(range(1, 51)),
        policies=[
            VariantConfig(name="ts", type="thompson"),
            VariantConfig(name="control", type="random", control=True),
        ],
    )
    asyncio.run(insert_running_experiment(env["DATABASE_URL"], experiment_id, config))
    stream = generate(
        experiment_id,
        serves=300,
        variants=("ts", "control"),
        catalogue=list(range(1, 51)),
        start=START,
        window=WINDOW,
        spacing=timedelta(milliseconds=50),
        slate_size=5,
        seed=5,
    )
    serve = next(event for event in stream.events if isinstance(event, ServeEvent))
    click = next(event for event in stream.events if isinstance(event, ClickEvent))
    reward = stream.rewards()[0]
    samples = {
        "serves": serve,
        "clicks": click,
        "rewards": reward,
        "late_clicks": LateClick(
            serve_id=serve.serve_id,
            experiment_id=experiment_id,
            variant=serve.variant,
            item_id=serve.items[0].item_id,
            user_id=serve.user_id,
            clicked_at=serve.served_at + 2 * WINDOW,
            window_closed_at=serve.served_at + WINDOW,
        ),
        "state_updates": PosteriorUpdate(
            experiment_id=experiment_id,
            variant="ts",
            version=1,
            arm_ids=[1],
            pulls=[1.0],
            successes=[0.0],
            updated_at=serve.served_at,
        ),
    }
    expected: Counter[tuple[str, str]] = Counter()
    poison: list[tuple[str, bytes]] = []
    for name, event in samples.items():
        topic = env[f"CINEAMATE_{name.upper()}_TOPIC"]
        body = orjson.loads(event.model_dump_json())
        poison.append((topic, b"{not json"))
        poison.append((topic, orjson.dumps(body | {"schema_version": 99})))
        poison.append((topic, orjson.dumps(body | {"padding": "x" * 10_000})))
        expected.update({(topic, "invalid.json"), (topic, "invalid.schema_version")})
        expected[(topic, "invalid.too_large")] += 1
        if "experiment_id" in body:
            poison.append((topic, orjson.dumps(body | {"experiment_id": "no-such-experiment"})))
            expected[(topic, "invalid.experiment")] += 1

    async def send_poison() -> None:
        raw = AIOKafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
        await raw.start()
        try:
            for topic, value in poison:
                await raw.send_and_wait(topic, value, key=b"poison")
        finally:
            await raw.stop()

    half = len(stream.events) // 2
    messages = stream.messages(env["CINEAMATE_SERVES_TOPIC"], env["CINEAMATE_CLICKS_TOPIC"])
    service = start_service(env, "analytics", tmp_path)
    try:
        asyncio.run(produce(env["KAFKA_BOOTSTRAP_SERVERS"], messages[:half]))
        asyncio.run(send_poison())
        asyncio.run(produce(env["KAFKA_BOOTSTRAP_SERVERS"], messages[half:]))
        wait_until(
            "every serve counted",
            lambda: (
                asyncio.run(_serves_counted(env["DATABASE_URL"], experiment_id)) == stream.serves
            ),
        )
        letters = asyncio.run(
            read_topic(
                env["KAFKA_BOOTSTRAP_SERVERS"],
                env["CINEAMATE_DEAD_LETTER_TOPIC"],
                DeadLetter,
                expected=len(poison),
            )
        )
        assert service.poll() is None
    finally:
        stop_service(service)
    assert Counter((letter.source_topic, letter.reason_code) for letter in letters) == expected
    assert {letter.consumer_group for letter in letters} == {
        env["CINEAMATE_ANALYTICS_CONSUMER_GROUP"]
    }
    assert all(letter.payload() for letter in letters)
