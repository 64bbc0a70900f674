"""``cineamate replay --live``: a synthetic log drives the real platform, then offline.

The assignment, reward and policy services run as processes of their own on
the session's broker, PostgreSQL and Redis. The live replay of a small
synthetic MovieLens window (50 items, so matches are frequent) sends every
event to the assignment service at a bounded rate on 127.0.0.1; every serve
reaches the serves topic, every click reaches the learner as a success, and
each variant's live replay CTR agrees with the offline replay of its policy
over the same users' events. A refused client key stops the replay before it
creates anything.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from pydantic import BaseModel

from cineamate.common.events import ClickEvent, ServeEvent
from cineamate.stack.testing import (
    READ,
    provision,
    read_topic,
    run_cli,
    start_service,
    stop_service,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

RATE = 150
TOP_ITEMS = 50
SEEDS = 3
# Long enough that no click, sent right after its slate, comes after its window.
REWARD_WINDOW_SECONDS = 10

ModelT = TypeVar("ModelT", bound=BaseModel)


def _messages(env: dict[str, str], topic: str, model: type[ModelT], expected: int) -> list[ModelT]:
    return asyncio.run(
        read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env[topic], model, expected=expected)
    )


def test_live_replay_drives_the_platform_and_agrees_with_offline(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(isolated_env) | {
        "CINEAMATE_REWARD_IDLE_AFTER_SECONDS": "1",
        "CINEAMATE_REWARD_ALLOWED_LATENESS_SECONDS": "0.5",
    }
    data, out = tmp_path / "synth", tmp_path / "live"
    made = run_cli(env, "dataset", "synth", "--out", str(data), "--scale", "0.1", "--seed", "7")
    assert made.returncode == 0, made.stderr
    provision(env)
    services = [start_service(env, name, tmp_path) for name in ("assignment", "reward", "policy")]
    url = f"http://127.0.0.1:{env['CINEAMATE_ASSIGNMENT_PORT']}"
    policy = httpx.Client(base_url=f"http://127.0.0.1:{env['CINEAMATE_POLICY_PORT']}", timeout=10)
    replay = ["replay", "--data", str(data), "--top-items", str(TOP_ITEMS), "--live", url]
    try:
        refused = run_cli(env | {"CINEAMATE_CLIENT_KEY": "wrong"}, *replay, "--out", str(out))
        assert refused.returncode == 2, refused.stderr
        assert "refused CINEAMATE_CLIENT_KEY" in refused.stderr
        listed = httpx.get(f"{url}/api/experiments", headers=READ)
        assert listed.json() == [], "nothing is created with a refused key"

        done = run_cli(
            env,
            *replay,
            "--seeds",
            str(SEEDS),
            "--rate",
            str(RATE),
            "--reward-window-seconds",
            str(REWARD_WINDOW_SECONDS),
            "--out",
            str(out),
        )
        assert done.returncode == 0, done.stderr
        assert "| thompson | thompson |" in done.stdout
        document = json.loads((out / "live.json").read_text())
        assert "Differences that remain by design" in (out / "live.md").read_text()

        events = document["window"]["events"]
        drive = document["drive"]
        assert drive["events"] == drive["requested"] == events > 1_000
        assert drive["failed"] == 0, drive["failures"]
        # Paced, not flooded: the run took about events / rate seconds.
        assert drive["events_per_second"] <= RATE * 1.2

        variants = {v["variant"]: v for v in document["variants"]}
        assert set(variants) == {"thompson", "egreedy", "ucb1", "control"}
        assert variants["control"]["policy"] == "random"
        assert sum(v["events"] for v in variants.values()) == events
        for v in variants.values():
            assert 0 < v["clicks"] < v["matches"] < v["events"], v
            assert v["live_ctr"]["value"] == pytest.approx(v["clicks"] / v["matches"])
            assert v["offline_matches"] > 0, v
        disagree = [v for v in variants.values() if not v["agree"]]
        assert not disagree, disagree
        assert document["all_agree"] is True

        served = _messages(env, "CINEAMATE_SERVES_TOPIC", ServeEvent, events)
        assert len(served) == events
        assert {s.experiment_id for s in served} == {document["experiment_id"]}

        clicks = sum(v["clicks"] for v in variants.values())
        clicked = _messages(env, "CINEAMATE_CLICKS_TOPIC", ClickEvent, clicks)
        assert len(clicked) == clicks

        def successes() -> float | None:
            total = 0.0
            for variant in variants:
                state = policy.get(
                    f"/api/experiments/{document['experiment_id']}/policies/{variant}/state",
                    headers=READ,
                )
                if state.status_code != 200:
                    return None
                total += state.json()["total_successes"]
            return total if total >= clicks else None

        assert wait_until("the learner to count every click", successes) == clicks
    finally:
        policy.close()
        for service in services:
            stop_service(service)
