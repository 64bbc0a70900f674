"""Redis, PostgreSQL and the broker each go away under traffic; nothing is lost or doubled.

These tests stop or freeze servers, so they run on servers of their own (one
private stack for the module), never on the session's. Consumers retry a batch
that fails on a store connection error instead of dead-lettering it, so each
test also checks that the dead-letter topic stays empty.

- Redis is restarted empty (flushed and restarted in one) while rewards flow:
  the learner rebuilds every posterior from its PostgreSQL snapshot plus the
  rewards after it, recommendations keep answering, the counts end exact.
- PostgreSQL is stopped for 10 s in the middle of a stream: ``/readyz`` says
  so, no service exits, and once it is back the rewards, posteriors and
  analytics aggregates equal the ground truth.
- The broker is frozen (SIGSTOP) for 10 s, then resumed (SIGCONT), while
  recommendations are asked for. The embedded broker keeps its log and the
  committed offsets in memory only, so a real restart would be a new, empty
  cluster (docs/operations.md, "Broker restarts on the embedded stack");
  freezing it is what a durable broker's restart looks like to its clients.
  Recommendations keep answering, every serve event reaches the topic once the
  broker answers again (spooled if its send timed out) and the analytics
  consumer resumes from its committed offsets: its serve counts end exact.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from aiokafka import TopicPartition
from fault_streams import (
    Pipeline,
    Truth,
    analytics_of,
    committed_and_ends,
    make_pipeline,
    make_stream,
    posteriors,
    total_pulls,
    wait_for_truth,
)

from cineamate.common.events import DeadLetter, ServeEvent
from cineamate.common.kafka import OutgoingMessage
from cineamate.stack.embedded import EmbeddedBroker, EmbeddedPostgres, EmbeddedRedis
from cineamate.stack.local import LocalStack
from cineamate.stack.testing import (
    CLIENT,
    new_database,
    produce,
    read_topic,
    service_environment,
    stop_service,
    temporary_stack,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ServerT = TypeVar("ServerT")

OUTAGE_SECONDS = 10.0
# Recommendations asked for per second while a server is away.
REQUEST_RATE = 20.0
# An answer that waits for a missing server would take about a client timeout.
SLOWEST_ANSWER_SECONDS = 1.0


@pytest.fixture(scope="module")
def servers() -> Iterator[LocalStack]:
    """A broker, PostgreSQL and Redis for this module alone, to stop and freeze."""
    with temporary_stack("cineamate-outages-", environ={}) as local:
        yield local


@pytest.fixture
def outage_env(servers: LocalStack, tmp_path: Path) -> Iterator[dict[str, str]]:
    with new_database(servers.database_url) as database_url:
        env = service_environment(servers, database_url)
        env["CINEAMATE_ASSIGNMENT_SPOOL_DIR"] = str(tmp_path / "spool")
        yield env


def _server(servers: LocalStack, kind: type[ServerT]) -> ServerT:
    return next(server for server in servers.embedded if isinstance(server, kind))


@dataclass
class Traffic:
    """Recommendations asked for at a steady rate in a thread, every answer recorded."""

    pipeline: Pipeline
    answers: list[tuple[float, int, float, dict[str, Any]]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        url = self.pipeline.url("assignment", "/api/movies/recommendations")
        with httpx.Client(headers=CLIENT, timeout=10) as client:
            i = 0
            while not self._stopping.is_set():
                started = time.monotonic()
                query = {"experiment_id": self.pipeline.experiment_id, "user_id": f"u{i}"}
                try:
                    answer = client.get(url, params=query)
                    status, body = answer.status_code, answer.json()
                except (httpx.HTTPError, ValueError) as exc:
                    status, body = 0, {"error": repr(exc)}
                self.answers.append((started, status, time.monotonic() - started, body))
                i += 1
                self._stopping.wait(max(0.0, 1 / REQUEST_RATE - (time.monotonic() - started)))

    def between(self, start: float, end: float) -> list[tuple[float, int, float, dict[str, Any]]]:
        return [answer for answer in self.answers if start <= answer[0] < end]

    def check(self) -> list[dict[str, Any]]:
        """Every answer a slate, in time; their bodies."""
        failed = [(status, body) for _, status, _, body in self.answers if status != 200]
        assert failed == [], failed[:5]
        slowest = max(seconds for _, _, seconds, _ in self.answers)
        assert slowest < SLOWEST_ANSWER_SECONDS, slowest
        return [body for *_, body in self.answers]


def _readiness(pipeline: Pipeline, service: str) -> dict[str, Any]:
    try:
        answer = httpx.get(pipeline.url(service, "/readyz"), timeout=5)
    except httpx.HTTPError as exc:
        return {"error": repr(exc)}
    body: dict[str, Any] = answer.json()
    return body | {"http_status": answer.status_code}


def _reports_down(pipeline: Pipeline, service: str, dependency: str) -> dict[str, Any] | None:
    readiness = _readiness(pipeline, service)
    down = readiness.get("http_status") == 503 and readiness["checks"][dependency] != "ok"
    return readiness if down else None


def _posteriors_if_up(pipeline: Pipeline) -> object:
    try:
        return posteriors(pipeline)
    except httpx.HTTPError as exc:
        return repr(exc)


def _rebuilds(pipeline: Pipeline) -> dict[str, tuple[int | None, int]]:
    """Per variant, the last rebuild the learner logged: snapshot version, rewards read back."""
    found = {}
    for log in sorted(pipeline.logs.glob("policy-*.log")):
        for line in log.read_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("msg") == "posterior rebuilt":
                variant = entry["posterior"].rsplit(":", 1)[1]
                found[variant] = (entry["from_snapshot_version"], entry["rewards_replayed"])
    return found


def _no_dead_letters(pipeline: Pipeline) -> None:
    found = asyncio.run(
        read_topic(
            pipeline.bootstrap, pipeline.topic("dead_letter"), DeadLetter, expected=1, timeout=3
        )
    )
    assert found == []


async def _snapshot_pulls(database_url: str, experiment_id: str) -> int:
    """Pulls in the latest snapshot of each variant, added up."""
    connection = await asyncpg.connect(database_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT coalesce(sum(a.pulls), 0) FROM posterior_snapshot_arms a "
                "JOIN (SELECT variant, max(version) AS version FROM posterior_snapshots "
                "      WHERE experiment_id = $1 GROUP BY variant) latest "
                "USING (variant, version) WHERE a.experiment_id = $1",
                experiment_id,
            )
        )
    finally:
        await connection.close()


def test_learner_rebuilds_from_snapshot_after_redis_restart(
    servers: LocalStack, outage_env: dict[str, str], tmp_path: Path
) -> None:
    # Snapshots are taken only when the learner stops, so which rewards the snapshot holds
    # and which the rebuild must read back from the topic is known.
    pipeline = make_pipeline(
        outage_env, tmp_path, CINEAMATE_POLICY_SNAPSHOT_INTERVAL_SECONDS="3600"
    )
    stream = make_stream(pipeline.experiment_id, serves=3_000)
    events = stream.rewards()
    rewards = [OutgoingMessage.of(pipeline.topic("rewards"), r) for r in events]
    # Snapshotted, applied after the snapshot, sent while Redis is away, sent after.
    cuts = [0, 2 * len(rewards) // 5, 3 * len(rewards) // 5, 4 * len(rewards) // 5, len(rewards)]
    slices = [rewards[start:end] for start, end in itertools.pairwise(cuts)]
    outcomes = list(itertools.accumulate(len(r.items) for r in events))
    snapshotted, applied = outcomes[cuts[1] - 1], outcomes[cuts[2] - 1]
    redis = _server(servers, EmbeddedRedis)
    database_url, experiment_id = pipeline.env["DATABASE_URL"], pipeline.experiment_id
    pipeline.start("policy", "assignment")
    try:
        with Traffic(pipeline) as traffic:
            asyncio.run(produce(pipeline.bootstrap, slices[0]))
            wait_until("the first rewards", lambda: total_pulls(pipeline) == snapshotted)
            stop_service(pipeline.processes["policy"])
            pipeline.start("policy")
            assert asyncio.run(_snapshot_pulls(database_url, experiment_id)) == snapshotted
            asyncio.run(produce(pipeline.bootstrap, slices[1]))
            wait_until("the rewards after the snapshot", lambda: total_pulls(pipeline) == applied)
            assert asyncio.run(_snapshot_pulls(database_url, experiment_id)) == snapshotted
            down = time.monotonic()
            redis.stop()
            asyncio.run(produce(pipeline.bootstrap, slices[2]))
            wait_until(
                "the learner to report Redis", lambda: _reports_down(pipeline, "policy", "redis")
            )
            time.sleep(max(0.0, down + 5 - time.monotonic()))
            redis.start()
            up = time.monotonic()
            asyncio.run(produce(pipeline.bootstrap, slices[3]))
            truth = Truth.of(stream).arms()
            wait_until(
                "the exact posteriors", lambda: _posteriors_if_up(pipeline) == truth, timeout=40
            )
            time.sleep(1.0)
        assert traffic.between(down, up), "no recommendation was asked for without Redis"
        traffic.check()
        time.sleep(1.0)
        assert pipeline.crashed() == {}
        assert posteriors(pipeline) == truth
        _no_dead_letters(pipeline)
    finally:
        pipeline.stop()
    replayed = _rebuilds(pipeline)
    print(
        f"{len(traffic.answers)} recommendations, {len(traffic.between(down, up))} without "
        f"Redis; posteriors rebuilt (snapshot version, rewards read back): {replayed}"
    )
    # Both rebuilt from the snapshot, with what was applied after it read back from the topic.
    assert sorted(replayed) == ["control", "ts"]
    assert all(version is not None for version, _ in replayed.values()), replayed
    assert sum(count for _, count in replayed.values()) > 0, replayed


def test_postgres_stopped_mid_stream_is_reported_and_caught_up(
    servers: LocalStack, outage_env: dict[str, str], tmp_path: Path
) -> None:
    pipeline = make_pipeline(outage_env, tmp_path, CINEAMATE_REWARD_CLICK_GRACE_SECONDS="2")
    stream = make_stream(pipeline.experiment_id, serves=12_000)
    inputs = len(stream.events) + len(stream.rewards())
    postgres = _server(servers, EmbeddedPostgres)
    asyncio.run(produce(pipeline.bootstrap, pipeline.messages(stream)))
    pipeline.start("reward", "policy", "analytics")
    try:
        done = wait_until(
            "the analytics service to get a quarter of its input in",
            lambda: (d := _streamed(pipeline)) >= inputs / 4 and d,
        )
        down = time.monotonic()
        postgres.stop()
        reported = {
            service: wait_until(
                f"{service} to report PostgreSQL",
                lambda s=service: _reports_down(pipeline, s, "postgres"),
                timeout=OUTAGE_SECONDS,
            )
            for service in ("analytics", "policy")
        }
        time.sleep(max(0.0, down + OUTAGE_SECONDS - time.monotonic()))
        assert pipeline.crashed() == {}
        postgres.start()
        wait_for_truth(pipeline, Truth.of(stream))
        _no_dead_letters(pipeline)
    finally:
        pipeline.stop()
    print(f"stopped at {done} of {inputs} input events; readiness then: {reported}")
    # Mid-stream: analytics had events of the stream left to process.
    assert done < inputs


def _streamed(pipeline: Pipeline) -> int:
    """The serves, clicks and rewards the analytics group has committed. Counted against
    the stream, not the log ends: the embedded broker reports a partition's end short
    while a large produced batch is its last."""
    offsets = asyncio.run(committed_and_ends(pipeline, "analytics"))
    streamed = {pipeline.topic(name) for name in ("serves", "clicks", "rewards")}
    return sum(done for tp, (done, _) in offsets.items() if tp.topic in streamed)


def test_broker_frozen_recommendations_spool_and_consumers_resume(
    servers: LocalStack, outage_env: dict[str, str], tmp_path: Path
) -> None:
    pipeline = make_pipeline(outage_env, tmp_path)
    broker = _server(servers, EmbeddedBroker)
    assert broker.pid is not None
    pipeline.start("assignment", "analytics")
    spooled = 0.0
    try:
        with Traffic(pipeline) as traffic:
            time.sleep(3.0)
            frozen = time.monotonic()
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                while time.monotonic() < frozen + OUTAGE_SECONDS:
                    metrics = httpx.get(pipeline.url("assignment", "/metrics"), timeout=5).text
                    for line in metrics.splitlines():
                        if line.startswith("cineamate_spool_messages "):
                            spooled = max(spooled, float(line.split()[1]))
                    time.sleep(0.5)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            resumed = time.monotonic()
            time.sleep(3.0)
        bodies = traffic.check()
        assert traffic.between(frozen, resumed), "no recommendation was asked for while frozen"
        served = {body["serve_id"]: body["variant"] for body in bodies}

        def delivered() -> Counter[str]:
            # Delivery is at least once: the count of messages can pass the number of serves
            # while one is still in the spool, so wait for every id.
            events = asyncio.run(
                read_topic(
                    pipeline.bootstrap,
                    pipeline.topic("serves"),
                    ServeEvent,
                    expected=len(served),
                    timeout=5,
                )
            )
            return Counter(event.serve_id for event in events)

        found = wait_until(
            "every serve event on the topic",
            lambda: (d := delivered()).keys() >= served.keys() and d,
            timeout=60,
        )
        assert found.keys() == served.keys()
        assert spooled > 0, "no serve event waited in the spool"
        expected = Counter(served.values())

        def serve_counts() -> dict[str, int]:
            aggregates = asyncio.run(
                analytics_of(pipeline.env["DATABASE_URL"], pipeline.experiment_id)
            )
            return {variant: totals[0] for variant, totals in aggregates["variant_totals"].items()}

        wait_until("the analytics serve counts", lambda: serve_counts() == expected, timeout=30)
        # After the freeze the embedded broker can report a partition's end one short of the
        # offset after the last record it delivered, so the commits are checked to reach it.

        def caught_up() -> dict[TopicPartition, tuple[int, int]] | None:
            offsets = asyncio.run(committed_and_ends(pipeline, "analytics"))
            return offsets if all(done >= end for done, end in offsets.values()) else None

        offsets = wait_until("the analytics offsets to be committed", caught_up)
        done = sum(done for done, _ in offsets.values())
        end = sum(end for _, end in offsets.values())
        time.sleep(1.0)
        assert serve_counts() == expected
        assert pipeline.crashed() == {}
        _no_dead_letters(pipeline)
    finally:
        pipeline.stop()
    print(
        f"{len(served)} recommendations, {len(traffic.between(frozen, resumed))} while frozen, "
        f"at most {spooled:g} events spooled, {found.total() - len(found)} delivered twice; "
        f"analytics committed {done} of {end}"
    )
