"""Guardrails against the running assignment service: injected harm rolls a variant back.

Serve events as the assignment service emits them are produced with 5% failed
calls (or 200 ms latency) on one variant; the guardrails roll that variant
back through the assignment API, the rollback is recorded, and the
variant's users get the control from then on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import RootModel

from cineamate.common.events import GuardrailTriggered, ServedItem, ServeEvent, StateUpdate
from cineamate.common.kafka import EventProducer, OutgoingMessage
from cineamate.stack.testing import (
    ADMIN,
    CLIENT,
    READ,
    provision,
    read_topic,
    start_service,
    stop_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Platform:
    env: dict[str, str]
    assignment: httpx.Client
    guardrails: httpx.Client


@pytest.fixture
def platform(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[Platform]:
    env = dict(isolated_env) | {
        "CINEAMATE_GUARDRAILS_EVALUATION_INTERVAL_SECONDS": str(INTERVAL_SECONDS),
        "CINEAMATE_GUARDRAILS_MIN_SAMPLE": "100",
        "CINEAMATE_GUARDRAILS_ASSIGNMENT_URL": (
            f"http://127.0.0.1:{isolated_env['CINEAMATE_ASSIGNMENT_PORT']}"
        ),
    }
    provision(env)
    services = [start_service(env, name, tmp_path) for name in ("assignment", "guardrails")]
    assignment = httpx.Client(
        base_url=f"http://127.0.0.1:{env['CINEAMATE_ASSIGNMENT_PORT']}", timeout=10
    )
    guardrails = httpx.Client(
        base_url=f"http://127.0.0.1:{env['CINEAMATE_GUARDRAILS_PORT']}", headers=READ, timeout=10
    )
    try:
        yield Platform(env, assignment, guardrails)
    finally:
        assignment.close()
        guardrails.close()
        for service in services:
            stop_service(service)


def _start_experiment(platform: Platform) -> str:
    created = platform.assignment.post(
        "/api/experiments",
        headers=ADMIN,
        json={
            "name": "guardrail test",
            "catalogue": list(range(1, 201)),
            "policies": [
                {"name": "control", "type": "random", "control": True},
                {"name": "ts", "type": "thompson"},
            ],
            "traffic": 1.0,
            "slate_size": 5,
        },
    )
    assert created.status_code == 201, created.text
    experiment_id: str = created.json()["id"]
    started = platform.assignment.patch(
        f"/api/experiments/{experiment_id}", headers=ADMIN, json={"status": "running"}
    )
    assert started.status_code == 200, started.text
    return experiment_id


def _serves(
    experiment_id: str, variant: str, count: int, *, failed_every: int = 0, latency_ms: float = 8.0
) -> list[ServeEvent]:
    serves = []
    for index in range(count):
        failed = bool(failed_every) and index % failed_every == 0
        serves.append(
            ServeEvent(
                serve_id=uuid.uuid4().hex,
                experiment_id=experiment_id,
                variant=variant,
                policy_type="random" if variant == "control" else "thompson",
                user_id=f"{variant}-{index}",
                items=[]
                if failed
                else [
                    ServedItem(item_id=1 + (index + slot) % 200, position=slot, propensity=0.05)
                    for slot in range(5)
                ],
                state_version=0,
                latency_ms=latency_ms,
                status="error" if failed else "ok",
                served_at=datetime.now(UTC),
            )
        )
    return serves


async def _produce(env: dict[str, str], serves: list[ServeEvent]) -> None:
    producer = EventProducer(env["KAFKA_BOOTSTRAP_SERVERS"], client_id="test")
    await producer.start()
    try:
        topic = env["CINEAMATE_SERVES_TOPIC"]
        await producer.send_many(OutgoingMessage.of(topic, serve) for serve in serves)
    finally:
        await producer.stop()


async def _guardrail_events(env: dict[str, str]) -> list[GuardrailTriggered]:
    """Every guardrail announcement on the state-updates topic so far."""
    updates = await read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["CINEAMATE_STATE_UPDATES_TOPIC"],
        _AnyStateUpdate,
        expected=10_000,
        timeout=3,
    )
    return [u.root for u in updates if isinstance(u.root, GuardrailTriggered)]


class _AnyStateUpdate(RootModel[StateUpdate]):
    pass


def _user_on(platform: Platform, experiment_id: str, variant: str) -> str:
    for user in range(500):
        answer = platform.assignment.get(
            "/api/movies/recommendations",
            params={"experiment_id": experiment_id, "user_id": f"probe-{user}"},
            headers=CLIENT,
        )
        assert answer.status_code == 200, answer.text
        if answer.json()["variant"] == variant:
            return f"probe-{user}"
    raise AssertionError(f"no user lands on {variant}")


def _wait_rolled_back(platform: Platform, experiment_id: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        answer = platform.assignment.get(f"/api/experiments/{experiment_id}", headers=READ)
        policies = {p["name"]: p for p in answer.json()["policies"]}
        if policies["ts"]["rolled_back"]:
            return time.monotonic() - started
        time.sleep(0.2)
    guardrails = platform.guardrails.get(f"/api/experiments/{experiment_id}/guardrails").json()
    raise AssertionError(f"ts was not rolled back: {guardrails}")


@pytest.mark.parametrize(
    ("harm", "guardrail"),
    [({"failed_every": 20}, "error_rate"), ({"latency_ms": 200.0}, "latency_p95")],
)
def test_injected_harm_rolls_the_variant_back(
    platform: Platform, harm: dict[str, Any], guardrail: str
) -> None:
    experiment_id = _start_experiment(platform)
    user = _user_on(platform, experiment_id, "ts")
    healthy = _serves(experiment_id, "control", 600)
    harmed = _serves(experiment_id, "ts", 600, **harm)
    asyncio.run(_produce(platform.env, healthy + harmed))

    # Two breaching evaluations, plus the time the events take to be read.
    _wait_rolled_back(platform, experiment_id, timeout=2 * INTERVAL_SECONDS + 10)

    report = platform.guardrails.get(f"/api/experiments/{experiment_id}/guardrails").json()
    (rollback,) = report["rollbacks"]
    assert (rollback["variant"], rollback["guardrail"], rollback["action"]) == (
        "ts",
        guardrail,
        "rollback",
    )
    assert rollback["observed"] > rollback["threshold"]
    statuses = {(g["variant"], g["name"]): g["status"] for g in report["guardrails"]}
    assert statuses[("control", guardrail)] == "ok"
    # The assignment service follows: the variant's users now get the control.
    deadline = time.monotonic() + 3
    variant = "ts"
    while variant != "control" and time.monotonic() < deadline:
        answer = platform.assignment.get(
            "/api/movies/recommendations",
            params={"experiment_id": experiment_id, "user_id": user},
            headers=CLIENT,
        )
        variant = answer.json()["variant"]
        time.sleep(0.1)
    assert variant == "control"
    announced = asyncio.run(_guardrail_events(platform.env))
    assert [(e.experiment_id, e.variant, e.guardrail) for e in announced] == [
        (experiment_id, "ts", guardrail)
    ]
    metrics = httpx.get(f"{platform.guardrails.base_url}/metrics").text
    assert f'cineamate_guardrail_rollbacks_total{{action="rollback",guardrail="{guardrail}"}}' in (
        metrics
    )

    # An admin undoes it: the variant serves again and is judged on what it does from now.
    undone = platform.assignment.patch(
        f"/api/experiments/{experiment_id}", headers=ADMIN, json={"rolled_back": {"ts": False}}
    )
    assert undone.status_code == 200, undone.text
    asyncio.run(_produce(platform.env, _serves(experiment_id, "ts", 300)))
    time.sleep(4 * INTERVAL_SECONDS)
    after = platform.guardrails.get(f"/api/experiments/{experiment_id}/guardrails").json()
    assert after["rolled_back"] == []
    assert len(after["rollbacks"]) == 1


def test_a_healthy_variant_is_left_alone(platform: Platform) -> None:
    experiment_id = _start_experiment(platform)
    asyncio.run(
        _produce(
            platform.env,
            _serves(experiment_id, "control", 600) + _serves(experiment_id, "ts", 600),
        )
    )
    deadline = time.monotonic() + 6 * INTERVAL_SECONDS
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        report = platform.guardrails.get(f"/api/experiments/{experiment_id}/guardrails").json()
        time.sleep(INTERVAL_SECONDS)
    assert report["rollbacks"] == []
    statuses = {(g["variant"], g["name"]): g["status"] for g in report["guardrails"]}
    assert statuses[("ts", "error_rate")] == "ok"
    assert statuses[("ts", "latency_p95")] == "ok"
