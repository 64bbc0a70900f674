"""The policy service against the real broker, Redis and PostgreSQL, run as its own process."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from cineamate.common.events import DeadLetter, RewardedItem, RewardEvent
from cineamate.common.experiments import ExperimentConfig, VariantConfig
from cineamate.common.kafka import OutgoingMessage
from cineamate.stack.testing import (
    READ,
    insert_running_experiment,
    produce,
    provision,
    read_topic,
    start_service,
    stop_service,
    unique,
)

pytestmark = pytest.mark.integration

CATALOGUE = list(range(1, 51))
BASE_TIME = datetime(2026, 3, 1, tzinfo=UTC)


async def _create_experiment(database_url: str, experiment_id: str) -> None:
    config = ExperimentConfig(
        name="learner test",
        catalogue=CATALOGUE,
        policies=[
            VariantConfig(name="ts", type="thompson"),
            VariantConfig(name="control", type="random", control=True),
        ],
    )
    await insert_running_experiment(database_url, experiment_id, config)


def _rewards(experiment_id: str, count: int, seed: int, prefix: str) -> list[RewardEvent]:
    """Messages carrying ``count`` outcomes in all: 1 to 3 distinct items each, as the
    reward service sends them (a click's single item, a window's unclicked items)."""
    rng = np.random.default_rng(seed)
    events = []
    made = 0
    while made < count:
        size = min(int(rng.integers(1, 4)), count - made)
        items = rng.choice(CATALOGUE, size=size, replace=False)
        variant = "ts" if rng.random() < 0.5 else "control"
        events.append(
            RewardEvent(
                serve_id=f"{prefix}-{len(events)}",
                experiment_id=experiment_id,
                variant=variant,
                policy_type="thompson" if variant == "ts" else "random",
                items=[
                    RewardedItem(
                        item_id=int(item),
                        position=position,
                        propensity=0.1,
                        reward=float(rng.random() < 0.2),
                    )
                    for position, item in enumerate(items)
                ],
                served_at=BASE_TIME,
                rewarded_at=BASE_TIME + timedelta(seconds=made % 3600),
            )
        )
        made += size
    return events


def _outcomes(rewards: list[RewardEvent]) -> int:
    return sum(len(reward.items) for reward in rewards)


def _truth(rewards: list[RewardEvent]) -> dict[str, tuple[Counter[int], Counter[int]]]:
    truth: dict[str, tuple[Counter[int], Counter[int]]] = {}
    for reward in rewards:
        pulls, successes = truth.setdefault(reward.variant, (Counter(), Counter()))
        for item in reward.items:
            pulls[item.item_id] += 1
            successes[item.item_id] += int(item.reward)
    return truth


@dataclass(frozen=True)
class Learner:
    """A policy service under test: its environment, port and experiment."""

    env: dict[str, str]
    experiment_id: str
    logs: Path

    @property
    def port(self) -> int:
        return int(self.env["CINEAMATE_POLICY_PORT"])


def _state(learner: Learner, variant: str) -> dict[str, Any]:
    url = (
        f"http://127.0.0.1:{learner.port}/api/experiments/{learner.experiment_id}"
        f"/policies/{variant}/state"
    )
    answer = httpx.get(url, headers=READ, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _wait_total(learner: Learner, expected: float, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    total = -1.0
    while time.monotonic() < deadline:
        try:
            total = sum(_state(learner, v)["total_pulls"] for v in ("ts", "control"))
        except httpx.HTTPError:
            total = -1.0
        if total == expected:
            time.sleep(1.0)  # anything extra (a double count) would show up now
            total = sum(_state(learner, v)["total_pulls"] for v in ("ts", "control"))
            assert total == expected
            return
        time.sleep(0.3)
    raise AssertionError(f"total pulls {total}, expected {expected}")


def _assert_counts(learner: Learner, truth: dict[str, tuple[Counter[int], Counter[int]]]) -> None:
    for variant, (pulls, successes) in truth.items():
        arms = {arm["arm_id"]: arm for arm in _state(learner, variant)["arms"]}
        for item in CATALOGUE:
            assert arms[item]["pulls"] == pulls[item], (variant, item)
            assert arms[item]["successes"] == successes[item], (variant, item)


async def _produce(bootstrap: str, topic: str, rewards: list[RewardEvent]) -> None:
    await produce(bootstrap, (OutgoingMessage.of(topic, reward) for reward in rewards))


@pytest.fixture
def learner(isolated_env: dict[str, str], tmp_path: Path) -> Learner:
    # Redis is shared by the session: an id of its own keeps this test's posteriors apart.
    experiment_id = unique("exp")
    env = dict(isolated_env) | {
        "CINEAMATE_REWARDS_PARTITIONS": "3",
        "CINEAMATE_POLICY_SNAPSHOT_INTERVAL_SECONDS": "1",
        "CINEAMATE_MAX_MESSAGE_BYTES": "8192",
    }
    provision(env)
    asyncio.run(_create_experiment(env["DATABASE_URL"], experiment_id))
    return Learner(env, experiment_id, tmp_path)


async def test_rewards_count_once_survive_a_kill_and_rebuild_after_redis_loss(
    learner: Learner,
) -> None:
    env, experiment = learner.env, learner.experiment_id
    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["CINEAMATE_REWARDS_TOPIC"]
    first = _rewards(experiment, 20_000, seed=1, prefix="a")

    service = start_service(env, "policy", learner.logs)
    try:
        await _produce(bootstrap, topic, first)
        # Kill the learner mid-stream: the batch between its Redis write and its commit
        # is redelivered after the restart and must not count twice.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _state(learner, "ts")["total_pulls"] > 0:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        service = start_service(env, "policy", learner.logs)
        _wait_total(learner, 20_000)
        _assert_counts(learner, _truth(first))

        # The same rewards again (a re-emission, new offsets, same ids): nothing changes.
        await _produce(bootstrap, topic, first[:5_000])
        second = _rewards(experiment, 1_000, seed=2, prefix="b")
        await _produce(bootstrap, topic, second)
        _wait_total(learner, 21_000)
        _assert_counts(learner, _truth(first + second))

        # Redis loses the posteriors: the next reward rebuilds them from the snapshot
        # plus the rewards after it, exactly.
        await asyncio.sleep(2.5)  # at least one snapshot interval
        third = _rewards(experiment, 2_000, seed=3, prefix="c")
        await _produce(bootstrap, topic, third)
        _wait_total(learner, 23_000)
        redis = Redis.from_url(env["REDIS_URL"])
        try:
            doomed = [key async for key in redis.scan_iter(match=f"cineamate:*{experiment}*")]
            assert doomed
            await redis.delete(*doomed)
        finally:
            await redis.aclose()
        fourth = _rewards(experiment, 500, seed=4, prefix="d")
        await _produce(bootstrap, topic, fourth)
        _wait_total(learner, 23_500)
        _assert_counts(learner, _truth(first + second + third + fourth))
    finally:
        stop_service(service)


async def test_bad_rewards_are_dead_lettered_and_the_stream_goes_on(learner: Learner) -> None:
    env, experiment = learner.env, learner.experiment_id
    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["CINEAMATE_REWARDS_TOPIC"]
    good = _rewards(experiment, 100, seed=5, prefix="g")
    unknown_experiment = good[0].model_copy(update={"experiment_id": "nope", "serve_id": "x1"})
    unknown_variant = good[0].model_copy(update={"variant": "ghost", "serve_id": "x2"})
    ghost_item = good[0].items[0].model_copy(update={"item_id": 999_999})
    unknown_arm = good[0].model_copy(update={"items": [ghost_item], "serve_id": "x3"})
    out_of_range = orjson.loads(good[0].model_dump_json()) | {"serve_id": "x4"}
    out_of_range["items"][0]["reward"] = 1.5
    wrong_version = orjson.loads(good[0].model_dump_json()) | {
        "serve_id": "x5",
        "schema_version": 9,
    }
    oversized = good[0].model_copy(
        update={
            "serve_id": "x6",
            "items": [ghost_item.model_copy(update={"item_id": i}) for i in range(400)],
        }
    )

    service = start_service(env, "policy", learner.logs)
    try:
        raw = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await raw.start()
        try:
            await raw.send_and_wait(topic, b"\x00garbage", key=b"k")
            await raw.send_and_wait(topic, orjson.dumps(out_of_range), key=b"k")
            await raw.send_and_wait(topic, orjson.dumps(wrong_version), key=b"k")
        finally:
            await raw.stop()
        await _produce(
            bootstrap, topic, [unknown_experiment, unknown_variant, unknown_arm, oversized]
        )
        await _produce(bootstrap, topic, good)
        _wait_total(learner, 100)
        _assert_counts(learner, _truth(good))
        letters = await read_topic(
            bootstrap, env["CINEAMATE_DEAD_LETTER_TOPIC"], DeadLetter, expected=7
        )
    finally:
        stop_service(service)
    assert sorted(letter.reason_code for letter in letters) == [
        "invalid.arm",
        "invalid.experiment",
        "invalid.json",
        "invalid.schema",
        "invalid.schema_version",
        "invalid.too_large",
        "invalid.variant",
    ]


def test_state_route_answers_404_for_unknown_experiment_and_policy(learner: Learner) -> None:
    port = learner.port
    service = start_service(learner.env, "policy", learner.logs)
    try:
        base = f"http://127.0.0.1:{port}/api/experiments"
        missing = httpx.get(f"{base}/nope/policies/ts/state", headers=READ, timeout=5)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found.experiment"
        ghost = httpx.get(
            f"{base}/{learner.experiment_id}/policies/ghost/state", headers=READ, timeout=5
        )
        assert ghost.json()["error"]["code"] == "not_found.policy"
        empty = httpx.get(
            f"{base}/{learner.experiment_id}/policies/ts/state?sort=pulls&limit=5",
            headers=READ,
            timeout=5,
        )
        assert empty.status_code == 200
        body = empty.json()
        assert body["version"] == 0 and len(body["arms"]) == 5
        assert all(arm["posterior_mean"] == 0.5 for arm in body["arms"])
    finally:
        stop_service(service)
