"""The analytics service against the real broker and PostgreSQL.

A small hand-made fixture goes through the topics twice (a redelivery); the
aggregates then equal a from-scratch recomputation over the raw rows, and
the API answers equal values worked out by hand.
"""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from cineamate.common.events import (
    Event,
    LateClick,
    PosteriorUpdate,
    RewardedItem,
    RewardEvent,
    ServedItem,
    ServeEvent,
)
from cineamate.common.experiments import ExperimentConfig, GuardrailThresholds, VariantConfig
from cineamate.common.kafka import EventProducer, OutgoingMessage
from cineamate.stack.testing import (
    READ,
    insert_running_experiment,
    provision,
    start_service,
    stop_service,
    unique,
)

pytestmark = pytest.mark.integration

MINUTE = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Analytics:
    env: dict[str, str]
    experiment_id: str
    process: subprocess.Popen[bytes]
    http: httpx.Client

    def get(self, path: str, **params: Any) -> Any:
        answer = self.http.get(f"/api/experiments/{self.experiment_id}/{path}", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def topic(self, name: str) -> str:
        return self.env[f"CINEAMATE_{name.upper()}_TOPIC"]


@pytest.fixture
def analytics(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[Analytics]:
    env = dict(isolated_env) | {
        "CINEAMATE_ANALYTICS_CONSUMER_GROUP": unique("analytics"),
        # Counted on every call, so the user figures follow the ingest at once.
        "CINEAMATE_ANALYTICS_USER_COUNT_CACHE_SECONDS": "0",
    }
    provision(env)
    experiment_id = unique("exp")
    config = ExperimentConfig(
        name="analytics test",
        catalogue=[1, 2, 3, 4],
        policies=[
            VariantConfig(name="control", type="random", control=True),
            VariantConfig(name="ts", type="thompson", weight=3.0),
        ],
        traffic=0.8,
        guardrails=GuardrailThresholds(latency_p95_ms=120),
    )
    asyncio.run(insert_running_experiment(env["DATABASE_URL"], experiment_id, config))
    process = start_service(env, "analytics", tmp_path)
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{env['CINEAMATE_ANALYTICS_PORT']}", headers=READ, timeout=30
    )
    try:
        yield Analytics(env, experiment_id, process, http)
    finally:
        http.close()
        stop_service(process)


def _serve(
    experiment_id: str,
    serve_id: str,
    variant: str,
    user: str,
    items: list[int],
    latency_ms: float,
    user_type: str,
    at: datetime = MINUTE,
) -> ServeEvent:
    return ServeEvent(
        serve_id=serve_id,
        experiment_id=experiment_id,
        variant=variant,
        policy_type="thompson" if variant == "ts" else "random",
        user_id=user,
        items=[
            ServedItem(item_id=item, position=position, propensity=0.5)
            for position, item in enumerate(items)
        ],
        cohort={"user_type": user_type},
        state_version=1,
        latency_ms=latency_ms,
        served_at=at,
    )


def _reward(serve: ServeEvent, outcomes: dict[int, float], at: datetime) -> RewardEvent:
    return RewardEvent(
        serve_id=serve.serve_id,
        experiment_id=serve.experiment_id,
        variant=serve.variant,
        policy_type=serve.policy_type,
        items=[
            RewardedItem(item_id=item.item_id, position=item.position, propensity=0.5, reward=r)
            for item in serve.items
            for r in (outcomes.get(item.item_id),)
            if r is not None
        ],
        user_id=serve.user_id,
        cohort=serve.cohort,
        served_at=serve.served_at,
        rewarded_at=at,
    )


def _fixture(experiment_id: str) -> list[tuple[str, Event]]:
    s1 = _serve(experiment_id, "s1", "ts", "u1", [1, 2], 10.0, "new")
    s2 = _serve(experiment_id, "s2", "ts", "u2", [1, 3], 150.0, "returning")
    s3 = _serve(experiment_id, "s3", "control", "u3", [2, 3], 20.0, "new")
    later = MINUTE + timedelta(minutes=1)
    return [
        ("serves", s1),
        ("serves", s2),
        ("serves", s3),
        ("rewards", _reward(s1, {1: 1.0}, MINUTE + timedelta(seconds=5))),
        ("rewards", _reward(s1, {2: 0.0}, later)),
        ("rewards", _reward(s2, {1: 0.0, 3: 0.0}, later)),
        ("rewards", _reward(s3, {2: 1.0}, MINUTE + timedelta(seconds=9))),
        ("rewards", _reward(s3, {3: 0.0}, later)),
        (
            "late_clicks",
            LateClick(
                serve_id="s2",
                experiment_id=experiment_id,
                variant="ts",
                item_id=3,
                user_id="u2",
                clicked_at=later + timedelta(minutes=5),
                window_closed_at=later,
            ),
        ),
        (
            "state_updates",
            PosteriorUpdate(
                experiment_id=experiment_id,
                variant="ts",
                version=3,
                arm_ids=[1, 2, 3],
                pulls=[2.0, 1.0, 1.0],
                successes=[1.0, 0.0, 0.0],
                updated_at=later,
            ),
        ),
    ]


async def _produce(analytics: Analytics, events: list[tuple[str, Event]]) -> None:
    producer = EventProducer(analytics.env["KAFKA_BOOTSTRAP_SERVERS"], client_id="test")
    await producer.start()
    try:
        await producer.send_many(
            OutgoingMessage.of(analytics.topic(topic), event) for topic, event in events
        )
    finally:
        await producer.stop()


def _wait_for_totals(analytics: Analytics, serves: int, rewards: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    summary: dict[str, Any] = {}
    while time.monotonic() < deadline:
        summary = analytics.get("summary")
        totals = summary["totals"]
        if totals["serves"] >= serves and totals["rewards"] >= rewards:
            return summary
        time.sleep(0.3)
    metrics = [
        line
        for line in analytics.http.get("/metrics").text.splitlines()
        if line.startswith(
            ("cineamate_analytics", "cineamate_dead_letters", "cineamate_consumer_batch_f")
        )
    ]
    raise AssertionError(f"analytics never caught up: {summary.get('totals')}; {metrics}")


async def _recomputed_minutes(database_url: str, experiment_id: str) -> tuple[Any, Any]:
    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetch(
            "SELECT variant, minute, serves, outcomes, rewards FROM analytics_variant_minutes "
            "WHERE experiment_id = $1 AND serves + outcomes > 0 ORDER BY 1, 2",
            experiment_id,
        )
        recomputed = await connection.fetch(
            "SELECT variant, minute, sum(serves)::bigint AS serves, "
            "sum(outcomes)::bigint AS outcomes, sum(rewards) AS rewards FROM ("
            "  SELECT variant, date_trunc('minute', served_at) AS minute, 1 AS serves, "
            "         0 AS outcomes, 0.0 AS rewards FROM analytics_serves WHERE experiment_id = $1"
            "  UNION ALL"
            "  SELECT variant, date_trunc('minute', served_at), 0, 1, reward "
            "  FROM analytics_rewards WHERE experiment_id = $1"
            ") raw GROUP BY 1, 2 ORDER BY 1, 2",
            experiment_id,
        )
    finally:
        await connection.close()
    return [tuple(row) for row in stored], [tuple(row) for row in recomputed]


async def test_views_are_exact_after_a_redelivery_and_match_hand_computed_values(
    analytics: Analytics,
) -> None:
    fixture = _fixture(analytics.experiment_id)
    await _produce(analytics, fixture)
    await _produce(analytics, fixture)  # delivered again: nothing may count twice
    _wait_for_totals(analytics, serves=3, rewards=6)
    time.sleep(1.5)  # a double count would land now
    summary = analytics.get("summary")

    assert summary["totals"] == {
        "serves": 3,
        "rewards": 6,
        "clicks": 2.0,
        "errors": 0,
        "late_clicks": 1,
    }
    by_variant = {v["variant"]: v for v in summary["variants"]}
    assert by_variant["ts"]["ctr"]["estimate"] == pytest.approx(0.25)
    assert by_variant["control"]["ctr"]["estimate"] == pytest.approx(0.5)
    assert by_variant["ts"]["uplift"]["estimate"] == pytest.approx(-0.5)
    assert by_variant["ts"]["users"] == 2
    assert summary["traffic"]["configured"] == pytest.approx({"control": 0.4, "ts": 0.6})
    assert summary["traffic"]["observed"] == pytest.approx({"control": 1 / 3, "ts": 2 / 3})
    low, high = by_variant["ts"]["ctr"]["low"], by_variant["ts"]["ctr"]["high"]
    assert 0.0 < low < 0.25 < high < 1.0

    stored, recomputed = await _recomputed_minutes(
        analytics.env["DATABASE_URL"], analytics.experiment_id
    )
    assert stored == recomputed
    hours = analytics.get("timeseries", interval="1h")["points"]
    assert [p["time"][11:16] for p in hours] == ["12:00"]
    assert hours[0]["variants"]["ts"]["clicks"] == 1.0
    assert hours[0]["variants"]["ts"]["rewards"] == 4

    latency = {v["variant"]: v for v in analytics.get("latency")["variants"]}
    assert latency["ts"]["within_sla"] == pytest.approx(0.5)
    assert latency["control"]["within_sla"] == pytest.approx(1.0)
    assert 8.0 <= latency["control"]["p50_ms"] <= 24.0

    cohorts = {v["variant"]: v for v in analytics.get("cohorts", by="user_type")["variants"]}
    ts_cohorts = {c["value"]: c for c in cohorts["ts"]["cohorts"]}
    assert ts_cohorts["new"]["ctr"]["estimate"] == pytest.approx(0.5)
    assert ts_cohorts["returning"]["ctr"]["estimate"] == pytest.approx(0.0)
    assert cohorts["ts"]["fairness_cv"] == pytest.approx(1.0)

    arms = {v["variant"]: v["arms"] for v in analytics.get("arms", limit=10)["variants"]}
    ts_arms = {arm["item_id"]: arm for arm in arms["ts"]}
    assert ts_arms[1]["serves"] == 2 and ts_arms[1]["clicks"] == 1.0
    assert ts_arms[1]["share_of_serves"] == pytest.approx(0.5)
    assert ts_arms[1]["posterior_mean"] == pytest.approx((1 + 1) / (2 + 2))
    # The share is of all the variant's serves, not only of the items listed.
    (top,) = {v["variant"]: v["arms"] for v in analytics.get("arms", limit=1)["variants"]}["ts"]
    assert (top["item_id"], top["share_of_serves"]) == (1, pytest.approx(0.5))
    assert top["anomaly"] is False

    series = analytics.get("timeseries", interval="1m")
    # The serves' minute, and the late click's minute (which adds no outcome).
    assert [p["time"][11:16] for p in series["points"]] == ["12:30", "12:36"]
    assert series["points"][1]["variants"]["ts"]["cumulative_reward"] == 1.0
    point = series["points"][0]["variants"]
    assert point["ts"]["cumulative_reward"] == 1.0
    # Best CTR so far is the control's 0.5: ts had 4 outcomes and 1 click.
    assert point["ts"]["cumulative_regret"] == pytest.approx(4 * 0.5 - 1)
    assert point["control"]["cumulative_regret"] == pytest.approx(0.0)


async def test_event_pages_never_skip_or_repeat_and_export_is_safe_csv(
    analytics: Analytics,
) -> None:
    experiment_id = analytics.experiment_id
    serves = [
        _serve(
            experiment_id,
            f"p{index:03d}",
            "ts" if index % 2 else "control",
            '=HYPERLINK("x")' if index == 7 else f"u{index}",
            [1, 2, 3],
            5.0,
            "new",
            # Several serves share a timestamp: the id breaks the tie.
            at=MINUTE + timedelta(seconds=index // 3),
        )
        for index in range(61)
    ]
    # Each serve's outcomes in two messages: its one click, then the rest at the window.
    rewards = [
        message
        for serve in serves
        for message in (
            _reward(serve, {2: 1.0}, serve.served_at + timedelta(seconds=5)),
            _reward(serve, {1: 0.0, 3: 0.0}, serve.served_at + timedelta(minutes=1)),
        )
    ]
    await _produce(analytics, [("serves", serve) for serve in serves])
    await _produce(analytics, [("rewards", reward) for reward in rewards])
    _wait_for_totals(analytics, serves=61, rewards=61 * 3)

    def every_page(type_: str, key: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"type": type_, "limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = analytics.get("events", **params)
            seen += [event[key] for event in page["events"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    seen = every_page("serve", "serve_id")
    assert seen == sorted(serve.serve_id for serve in serves)
    # Outcomes in their serve's time order, then by id.
    by_serve_time = sorted(
        (serve.served_at, f"{serve.serve_id}:{item}") for serve in serves for item in (1, 2, 3)
    )
    assert every_page("reward", "reward_id") == [reward_id for _, reward_id in by_serve_time]
    assert every_page("click", "reward_id") == [
        reward_id for _, reward_id in by_serve_time if reward_id.endswith(":2")
    ]

    only_ts = analytics.get("events", type="serve", variant="ts", limit=1000)["events"]
    assert {event["variant"] for event in only_ts} == {"ts"}
    assert len(only_ts) == 30

    answer = analytics.http.get(
        f"/api/experiments/{experiment_id}/export", params={"type": "serve"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["serve_id"] for row in rows] == seen
    assert rows[7]["user_id"] == '\'=HYPERLINK("x")'

    bad = analytics.http.get(f"/api/experiments/{experiment_id}/events", params={"type": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "type"
    forged = analytics.http.get(
        f"/api/experiments/{experiment_id}/events", params={"cursor": "not-a-cursor"}
    )
    assert forged.status_code == 422 and forged.json()["error"]["field"] == "cursor"
    missing = analytics.http.get("/api/experiments/nope/summary")
    assert missing.status_code == 404
    anonymous = httpx.get(f"{analytics.http.base_url}/api/experiments/{experiment_id}/summary")
    assert anonymous.status_code == 401


@pytest.mark.slow
async def test_exporting_a_million_rows_keeps_memory_flat(analytics: Analytics) -> None:
    rows = 1_000_000
    connection = await asyncpg.connect(analytics.env["DATABASE_URL"])
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS analytics_serves_p20260301 PARTITION OF analytics_serves "
            "FOR VALUES FROM ('2026-03-01 00:00:00+00') TO ('2026-03-02 00:00:00+00')"
        )
        await connection.execute(
            "INSERT INTO analytics_serves SELECT 'bulk-' || n, $1, 'ts', 'thompson', "
            "'user-' || (n % 5000), '{\"user_type\": \"new\"}', ARRAY[1, 2, 3], "
            "ARRAY[0.1, 0.2, 0.3], 1, 5.0, 'ok', "
            "TIMESTAMPTZ '2026-03-01 00:00:00+00' + n * INTERVAL '10 ms' "
            "FROM generate_series(1, $2) AS n",
            analytics.experiment_id,
            rows,
        )
    finally:
        await connection.close()
    service = psutil.Process(analytics.process.pid)
    baseline = service.memory_info().rss
    peak = baseline
    lines = 0
    url = f"/api/experiments/{analytics.experiment_id}/export"
    with analytics.http.stream("GET", url, params={"type": "serve"}, timeout=300) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_lines():
            lines += 1 if chunk else 0
            if lines % 50_000 == 0:
                peak = max(peak, service.memory_info().rss)
    assert lines == rows + 1  # and the header
    growth_mb = (peak - baseline) / 2**20
    assert growth_mb < 100, f"the service grew by {growth_mb:.0f} MB during the export"
