"""While the broker is down, recommendations keep answering and their serve events wait in
the local spool; every one of them reaches the broker once it is back.

The session broker is shared by every test, so this test stops and restarts a broker of its
own. The embedded broker keeps topics in memory only: the restarted one starts empty, so
the events delivered before the outage are not looked for after it.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cineamate.common.events import ServeEvent
from cineamate.stack.embedded import EmbeddedBroker
from cineamate.stack.processes import free_port
from cineamate.stack.testing import read_topic

if TYPE_CHECKING:
    from conftest import AssignmentProcess, CineamateCommand, Launcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE_OUTAGE = 5
DURING_OUTAGE = 200
AFTER_OUTAGE = 5
# Answering must not wait for the broker; anything near the producer's request timeout
# (10 s) would mean it does.
SLOWEST_ANSWER_SECONDS = 1.0
SPOOL_METRIC = "cineamate_spool_messages"


def _serve_ids(service: AssignmentProcess, experiment_id: str, count: int, tag: str) -> list[str]:
    serve_ids, latencies = [], []
    for i in range(count):
        started = time.perf_counter()
        answer = service.recommend(experiment_id, f"{tag}-{i}")
        latencies.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
        serve_ids.append(answer.json()["serve_id"])
    print(
        f"{tag}: {count} recommendations, median {statistics.median(latencies) * 1000:.1f} ms, "
        f"slowest {max(latencies) * 1000:.1f} ms"
    )
    assert max(latencies) < SLOWEST_ANSWER_SECONDS
    return serve_ids


def _wait_for_spool(service: AssignmentProcess, wanted: float, timeout: float) -> float:
    """Seconds until ``/metrics`` shows ``wanted`` messages in the spool."""
    started = time.monotonic()
    value = None
    while time.monotonic() - started < timeout:
        value = service.metric(SPOOL_METRIC)
        if value == wanted:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{SPOOL_METRIC} is {value} after {timeout:g} s, expected {wanted:g}")


async def test_serve_events_survive_a_broker_outage(
    isolated_env: dict[str, str],
    cineamate: CineamateCommand,
    launch_assignment: Launcher,
    tmp_path: Path,
) -> None:
    port = free_port()
    broker = EmbeddedBroker(tmp_path / "broker", port=port)
    broker.start()
    try:
        env = isolated_env | {"KAFKA_BOOTSTRAP_SERVERS": broker.url}
        serves_topic = env["CINEAMATE_SERVES_TOPIC"]
        cineamate(env, "migrate")
        cineamate(env, "topics")
        service = launch_assignment(env)
        experiment_id: str = service.create_experiment()["id"]
        service.set_status(experiment_id, "running")

        before = _serve_ids(service, experiment_id, BEFORE_OUTAGE, "before")
        delivered = await read_topic(
            broker.url, serves_topic, ServeEvent, expected=BEFORE_OUTAGE, timeout=30
        )
        assert {event.serve_id for event in delivered} == set(before)

        broker.stop()
        during = _serve_ids(service, experiment_id, DURING_OUTAGE, "during")
        # Unacknowledged events reach the spool when the producer gives up on them (its
        # request timeout is 10 s); until the broker is back, every one of them must.
        waited = _wait_for_spool(service, DURING_OUTAGE, timeout=60)
        print(f"all {DURING_OUTAGE} events in the spool {waited:.1f} s after the last answer")

        # The embedded broker creates a topic on its first write, with partitions of its own
        # choosing, and acknowledges writes to partitions it lacks. So the service is frozen
        # until `cineamate topics` has created the topics on the restarted broker.
        service.process.send_signal(signal.SIGSTOP)
        try:
            broker = EmbeddedBroker(tmp_path / "broker-restarted", port=port)
            broker.start()
            cineamate(env, "topics")
        finally:
            service.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        after = _serve_ids(service, experiment_id, AFTER_OUTAGE, "after")

        expected = set(during) | set(after)
        events = await read_topic(
            broker.url, serves_topic, ServeEvent, expected=len(expected), timeout=90
        )
        received = Counter(event.serve_id for event in events)
        print(
            f"{len(received)} distinct serve events on the restarted broker within "
            f"{time.monotonic() - resumed:.1f} s of the service resuming, "
            f"{sum(received.values()) - len(received)} duplicates"
        )
        assert not expected - received.keys(), f"lost {len(expected - received.keys())}"
        assert received.keys() - expected <= set(before)
        _wait_for_spool(service, 0, timeout=30)
    finally:
        broker.stop()
