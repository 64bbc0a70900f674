"""The decision service on a migrated database whose analytics tables hold known counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cineamate.common.experiments import ExperimentConfig, VariantConfig
from cineamate.stack.testing import (
    READ,
    insert_running_experiment,
    provision,
    start_service,
    stop_service,
    unique,
)

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, tzinfo=UTC)


async def _load(
    database_url: str,
    experiment_id: str,
    counts: dict[str, tuple[int, int, int]],
    days: float,
) -> None:
    """Per variant (rewards, clicks, users), served over ``days`` of event time."""
    config = ExperimentConfig(
        name="decision test",
        catalogue=[1, 2, 3],
        traffic=1.0,
        policies=[
            VariantConfig(name="control", type="random", control=True),
            VariantConfig(name="ts", type="thompson"),
        ],
    )
    await insert_running_experiment(database_url, experiment_id, config)
    connection = await asyncpg.connect(database_url)
    try:
        for variant, (rewards, clicks, users) in counts.items():
            await connection.execute(
                "INSERT INTO analytics_variant_totals (experiment_id, variant, serves, outcomes, "
                "rewards) VALUES ($1, $2, $3, $3, $4)",
                experiment_id,
                variant,
                rewards,
                float(clicks),
            )
            for minute in (START, START + timedelta(days=days) - timedelta(minutes=1)):
                await connection.execute(
                    "INSERT INTO analytics_variant_minutes (experiment_id, variant, minute, serves)"
                    " VALUES ($1, $2, $3, 1)",
                    experiment_id,
                    variant,
                    minute,
                )
            await connection.copy_records_to_table(
                "analytics_users",
                records=[
                    (experiment_id, f"{variant}-{n}", variant, START, START, 1)
                    for n in range(users)
                ],
            )
    finally:
        await connection.close()


@pytest.fixture
def decision(
    isolated_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[dict[str, str], httpx.Client]]:
    env = dict(isolated_env) | {"CINEAMATE_DECISION_EVALUATION_INTERVAL_SECONDS": "0.5"}
    provision(env)
    service = start_service(env, "decision", tmp_path)
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{env['CINEAMATE_DECISION_PORT']}", headers=READ, timeout=10
    )
    try:
        yield env, http
    finally:
        http.close()
        stop_service(service)


def _decision(http: httpx.Client, experiment_id: str) -> dict[str, Any]:
    answer = http.get(f"/api/experiments/{experiment_id}/decision")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_a_clear_winner_ships_and_the_evaluation_is_stored(
    decision: tuple[dict[str, str], httpx.Client],
) -> None:
    env, http = decision
    experiment_id = unique("exp")
    counts = {"control": (100_000, 2_000, 5_000), "ts": (100_000, 2_600, 5_000)}
    asyncio.run(_load(env["DATABASE_URL"], experiment_id, counts, days=8))

    result = _decision(http, experiment_id)

    assert result["decision"] == "ship" and result["best_variant"] == "ts"
    assert result["days_elapsed"] == pytest.approx(8.0)
    assert "mSPRT" in result["method"]
    (ts,) = result["variants"]
    assert ts["effect"]["relative_uplift"] == pytest.approx(0.3)
    assert ts["effect"]["relative_low"] > 0
    assert ts["sample_sizes"] == {"variant": 100_000, "control": 100_000}
    assert ts["criteria"]["significant"] and ts["criteria"]["min_uplift"]
    assert result["sample_ratio_mismatch"]["mismatch"] is False
    deadline = time.monotonic() + 20
    while result["last_stored_evaluation"] is None and time.monotonic() < deadline:
        time.sleep(0.5)
        result = _decision(http, experiment_id)
    assert result["last_stored_evaluation"] is not None


def test_a_skewed_split_blocks_ship_and_too_few_days_iterate(
    decision: tuple[dict[str, str], httpx.Client],
) -> None:
    env, http = decision
    skewed, early = unique("exp"), unique("exp")
    asyncio.run(
        _load(
            env["DATABASE_URL"],
            skewed,
            {"control": (100_000, 2_000, 4_000), "ts": (100_000, 2_600, 6_000)},
            days=8,
        )
    )
    asyncio.run(
        _load(
            env["DATABASE_URL"],
            early,
            {"control": (100_000, 2_000, 5_000), "ts": (100_000, 2_600, 5_000)},
            days=2,
        )
    )

    blocked = _decision(http, skewed)
    assert blocked["sample_ratio_mismatch"]["mismatch"] is True
    assert blocked["decision"] != "ship"
    waiting = _decision(http, early)
    assert waiting["decision"] == "iterate"
    assert waiting["variants"][0]["criteria"]["min_window_days"] is False
    assert http.get("/api/experiments/nope/decision").status_code == 404
