"""A platform pipeline on one environment and a synthetic stream with its ground truth.

Shared by the fault tests: serves and clicks with a known answer
(``cineamate.reward.synthetic``) go through the reward, policy and analytics
services, and ``wait_for_truth`` checks that the rewards emitted, the learner's
posteriors and the analytics aggregates equal the truth exactly.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from cineamate.common.events import RewardEvent
from cineamate.common.experiments import ExperimentConfig, VariantConfig
from cineamate.common.kafka import OutgoingMessage
from cineamate.reward.synthetic import ArmCounts, Stream, count_arms, generate
from cineamate.stack.services import port_variable
from cineamate.stack.testing import (
    READ,
    insert_running_experiment,
    provision,
    start_service,
    stop_service,
    unique,
    wait_until,
)

CATALOGUE = list(range(1, 201))
VARIANTS = ("ts", "control")
WINDOW = timedelta(seconds=5)
START = datetime(2026, 3, 1, tzinfo=UTC)
# The consumer group, and the topics it reads, of each consumer service.
INPUTS = {
    "reward": ("serves", "clicks"),
    "policy": ("rewards",),
    "analytics": ("serves", "clicks", "rewards", "late_clicks", "state_updates"),
}


@dataclass
class Pipeline:
    """Platform processes on one environment, with one running experiment."""

    env: dict[str, str]
    experiment_id: str
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    def topic(self, name: str) -> str:
        return self.env[f"CINEAMATE_{name.upper()}_TOPIC"]

    def group(self, service: str) -> str:
        return self.env[f"CINEAMATE_{service.upper()}_CONSUMER_GROUP"]

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable(service)]}{path}"

    def start(self, *services: str) -> None:
        for service in services:
            self.processes[service] = start_service(self.env, service, self.logs)

    def kill_and_restart(self, service: str) -> None:
        process = self.processes[service]
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        self.start(service)

    def crashed(self) -> dict[str, int | None]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self) -> None:
        for process in self.processes.values():
            stop_service(process)

    def messages(self, stream: Stream) -> list[OutgoingMessage]:
        return stream.messages(self.topic("serves"), self.topic("clicks"))


def make_pipeline(env: dict[str, str], logs: Path, **settings: str) -> Pipeline:
    experiment_id = unique("exp")
    env = (
        dict(env)
        | {
            "CINEAMATE_SERVES_PARTITIONS": "3",
            "CINEAMATE_CLICKS_PARTITIONS": "3",
            "CINEAMATE_REWARDS_PARTITIONS": "3",
            "CINEAMATE_REWARD_CONSUMER_GROUP": unique("reward"),
            "CINEAMATE_POLICY_CONSUMER_GROUP": unique("policy"),
            "CINEAMATE_ANALYTICS_CONSUMER_GROUP": unique("analytics"),
            "CINEAMATE_REWARD_IDLE_AFTER_SECONDS": "3",
            "CINEAMATE_REWARD_ALLOWED_LATENESS_SECONDS": "1",
            "CINEAMATE_POLICY_SNAPSHOT_INTERVAL_SECONDS": "1",
            "CINEAMATE_DEPENDENCY_RETRY_MAX_SECONDS": "1",
        }
        | settings
    )
    provision(env)
    config = ExperimentConfig(
        name="fault test",
        catalogue=CATALOGUE,
        reward_window_hours=WINDOW.total_seconds() / 3600,
        slate_size=5,
        policies=[
            VariantConfig(name="ts", type="thompson"),
            VariantConfig(name="control", type="random", control=True),
        ],
    )
    asyncio.run(insert_running_experiment(env["DATABASE_URL"], experiment_id, config))
    return Pipeline(env, experiment_id, logs)


def make_stream(experiment_id: str, serves: int, start: datetime = START) -> Stream:
    return generate(
        experiment_id,
        serves=serves,
        variants=VARIANTS,
        catalogue=CATALOGUE,
        start=start,
        window=WINDOW,
        spacing=timedelta(milliseconds=10),
        slate_size=5,
        click_rate=0.12,
        seed=7,
    )


@dataclass(frozen=True)
class Truth:
    """Every outcome, and what the learner and the analytics views must say of them."""

    outcomes: dict[str, float]
    variant_of: dict[str, str]
    clicks: int
    late_clicks: int

    @classmethod
    def of(cls, stream: Stream) -> Truth:
        return cls(
            dict(stream.outcomes), dict(stream.variant_of), stream.clicks, stream.late_clicks
        )

    def arms(self) -> dict[tuple[str, int], ArmCounts]:
        return count_arms(self.outcomes, self.variant_of)

    def analytics(self) -> dict[str, Any]:
        arms = self.arms()
        serves = Counter(self.variant_of.values())
        totals = {
            variant: (
                serves[variant],
                sum(c.pulls for (v, _), c in arms.items() if v == variant),
                float(sum(c.successes for (v, _), c in arms.items() if v == variant)),
            )
            for variant in serves
        }
        return {
            "variant_totals": totals,
            "late_clicks": self.late_clicks,
            "clicks": self.clicks,
            "item_totals": {arm: (c.pulls, c.pulls, float(c.successes)) for arm, c in arms.items()},
            "arm_posteriors": arms,
        }


def posteriors(pipeline: Pipeline) -> dict[tuple[str, int], ArmCounts]:
    """Every arm with a pull, as the learner's state route reports it."""
    found = {}
    for variant in VARIANTS:
        path = f"/api/experiments/{pipeline.experiment_id}/policies/{variant}/state"
        answer = httpx.get(pipeline.url("policy", path), headers=READ, timeout=5)
        answer.raise_for_status()
        for arm in answer.json()["arms"]:
            if arm["pulls"]:
                found[(variant, arm["arm_id"])] = ArmCounts(
                    int(arm["pulls"]), int(arm["successes"])
                )
    return found


def total_pulls(pipeline: Pipeline) -> int:
    try:
        return sum(counts.pulls for counts in posteriors(pipeline).values())
    except httpx.HTTPError:
        return -1


async def analytics_of(database_url: str, experiment_id: str) -> dict[str, Any]:
    """The aggregates the analytics service keeps, in the shape of ``Truth.analytics``."""
    connection = await asyncpg.connect(database_url)
    try:
        totals = await connection.fetch(
            "SELECT variant, serves, outcomes, rewards, late_clicks "
            "FROM analytics_variant_totals WHERE experiment_id = $1",
            experiment_id,
        )
        items = await connection.fetch(
            "SELECT variant, item_id, serves, outcomes, rewards FROM analytics_item_totals "
            "WHERE experiment_id = $1",
            experiment_id,
        )
        posteriors = await connection.fetch(
            "SELECT variant, item_id, pulls, successes FROM analytics_arm_posteriors "
            "WHERE experiment_id = $1 AND pulls > 0",
            experiment_id,
        )
        clicks = await connection.fetchval("SELECT count(*) FROM analytics_clicks")
    finally:
        await connection.close()
    return {
        "variant_totals": {
            r["variant"]: (r["serves"], r["outcomes"], r["rewards"])
            for r in totals
            if r["serves"] or r["outcomes"]
        },
        "late_clicks": sum(r["late_clicks"] for r in totals),
        "clicks": clicks,
        "item_totals": {
            (r["variant"], r["item_id"]): (r["serves"], r["outcomes"], r["rewards"]) for r in items
        },
        "arm_posteriors": {
            (r["variant"], r["item_id"]): ArmCounts(int(r["pulls"]), int(r["successes"]))
            for r in posteriors
        },
    }


async def reward_outcomes(bootstrap: str, topic: str) -> dict[str, set[float]]:
    """Every outcome on the rewards topic, by id, with every value it was given."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: dict[str, set[float]] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    reward = RewardEvent.model_validate_json(message.value)
                    for reward_id, item in zip(reward.reward_ids, reward.items, strict=True):
                        seen.setdefault(reward_id, set()).add(item.reward)
    finally:
        await consumer.stop()
    return seen


async def committed_and_ends(
    pipeline: Pipeline, service: str
) -> dict[TopicPartition, tuple[int, int]]:
    """Per input partition of the service: the offset its consumer group has committed and
    the log end (read as a member of the group that never joins it, so the group is left
    alone)."""
    topics = [pipeline.topic(name) for name in INPUTS[service]]
    reader = AIOKafkaConsumer(
        bootstrap_servers=pipeline.bootstrap,
        group_id=pipeline.group(service),
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in reader.partitions_for_topic(topic) or set()
        ]
        # Commits first: the logs only grow, so an end read after its commit bounds it.
        committed = {tp: await reader.committed(tp) or 0 for tp in partitions}
        ends = await reader.end_offsets(partitions)
        return {tp: (committed[tp], ends[tp]) for tp in partitions}
    finally:
        await reader.stop()


async def backlog(pipeline: Pipeline, service: str) -> tuple[int, int]:
    """Records the service's consumer group has committed, and records in its input topics."""
    offsets = (await committed_and_ends(pipeline, service)).values()
    return sum(done for done, _ in offsets), sum(end for _, end in offsets)


def wait_for_truth(pipeline: Pipeline, truth: Truth, timeout: float = 150) -> None:
    """Wait until the learner and the analytics views reach the truth, give a double count
    time to show, then check them and the rewards topic exactly."""
    outcomes = len(truth.outcomes)
    expected = truth.analytics()
    database_url = pipeline.env["DATABASE_URL"]

    def observed() -> dict[str, Any]:
        return asyncio.run(analytics_of(database_url, pipeline.experiment_id))

    wait_until("the learner's pulls", lambda: total_pulls(pipeline) >= outcomes, timeout)
    try:
        wait_until("the analytics views", lambda: observed() == expected, timeout)
    except AssertionError:
        found = observed()
        differing = {k: (found[k], expected[k]) for k in expected if found[k] != expected[k]}
        raise AssertionError(f"analytics differs: {str(differing)[:2000]}") from None
    time.sleep(2.0)
    assert pipeline.crashed() == {}
    assert posteriors(pipeline) == truth.arms()
    assert observed() == expected
    seen = asyncio.run(reward_outcomes(pipeline.bootstrap, pipeline.topic("rewards")))
    assert {reward_id: values for reward_id, values in seen.items() if len(values) > 1} == {}
    assert {reward_id: values.pop() for reward_id, values in seen.items()} == truth.outcomes
