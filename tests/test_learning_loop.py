"""The learning loop across services: recommend, click, reward, learn.

The assignment, reward and policy services run as processes of their own on
the session's broker, PostgreSQL and Redis. Recommendations are served and
some of their items clicked through the HTTP API; once the attribution window
closes, the learner's posterior counts every served item once and every
clicked item as a success.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cineamate.stack.testing import (
    ADMIN,
    CLIENT,
    READ,
    provision,
    start_service,
    stop_service,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLATE = 4
USERS = 24
WINDOW_SECONDS = 2.0


def test_clicks_on_served_items_reach_the_posterior(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(isolated_env) | {
        "CINEAMATE_REWARD_IDLE_AFTER_SECONDS": "1",
        "CINEAMATE_REWARD_ALLOWED_LATENESS_SECONDS": "0.5",
    }
    provision(env)
    services = [start_service(env, name, tmp_path) for name in ("assignment", "reward", "policy")]
    assignment = httpx.Client(
        base_url=f"http://127.0.0.1:{env['CINEAMATE_ASSIGNMENT_PORT']}", timeout=10
    )
    policy = httpx.Client(base_url=f"http://127.0.0.1:{env['CINEAMATE_POLICY_PORT']}", timeout=10)
    try:
        created = assignment.post(
            "/api/experiments",
            headers=ADMIN,
            json={
                "name": "learning loop",
                "catalogue": list(range(1, 21)),
                "policies": [
                    {"name": "control", "type": "random", "control": True},
                    {"name": "ts", "type": "thompson"},
                ],
                "traffic": 1.0,
                "slate_size": SLATE,
                "reward_window_hours": WINDOW_SECONDS / 3600,
            },
        )
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        started = assignment.patch(
            f"/api/experiments/{experiment_id}", headers=ADMIN, json={"status": "running"}
        )
        assert started.status_code == 200, started.text

        served: dict[str, dict[str, Any]] = {}
        for user in range(USERS):
            answer = assignment.get(
                "/api/movies/recommendations",
                params={"experiment_id": experiment_id, "user_id": f"user-{user}", "k": SLATE},
                headers=CLIENT,
            )
            assert answer.status_code == 200, answer.text
            served[answer.json()["serve_id"]] = answer.json()
        clicks = [
            {"serve_id": serve_id, "movie_id": serve["items"][0]["movie_id"], "user_id": user}
            for serve_id, serve in served.items()
            for user in (serve["user_id"],)
        ][::2]
        accepted = assignment.post("/api/events/clicks", headers=CLIENT, json=clicks)
        assert accepted.status_code == 202, accepted.text

        def learned() -> tuple[float, float] | None:
            pulls = successes = 0.0
            for variant in ("control", "ts"):
                state = policy.get(
                    f"/api/experiments/{experiment_id}/policies/{variant}/state", headers=READ
                )
                if state.status_code != 200:
                    return None
                pulls += state.json()["total_pulls"]
                successes += state.json()["total_successes"]
            return (pulls, successes) if pulls >= USERS * SLATE else None

        pulls, successes = wait_until(
            "the posterior to count every served item", learned, timeout=90.0
        )
        time.sleep(1.5)  # anything counted twice would show up now
        assert learned() == (USERS * SLATE, len(clicks))
        assert (pulls, successes) == (USERS * SLATE, len(clicks))
    finally:
        assignment.close()
        policy.close()
        for service in services:
            stop_service(service)
