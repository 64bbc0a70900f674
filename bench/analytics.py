"""Ingest throughput and dashboard-API latency of one analytics service process.

The service (``cineamate serve analytics``) runs as its own process against the
embedded broker and PostgreSQL of a ``LocalStack`` started for the benchmark.

Ingest: every run has fresh topics, a fresh experiment and a fresh consumer
group. A realistic mix is produced before the service starts: serves (slates
of 10, with cohort attributes), the raw clicks, the rewards as the reward
service sends them (one message per click with its one item, one per window
close with the items not clicked) and the late clicks. The rate counts the
input messages committed by the service's group between its first commit and
the commit of the last message, so neither the process start nor the group
join (about 5 s on Tansu) is in it. The same-run baseline is a bare aiokafka
consumer fetching the same messages with ``getmany``. A run counts only if
the aggregates equal both the stream's known answer and a from-scratch SQL
recomputation over the raw tables.

API latency: 10 million raw rows of one experiment (1 million serves of 10
items and 9 million reward rows, over 14 days) are loaded straight into the
raw tables with ``INSERT ... SELECT`` over ``generate_series``, and the
aggregate tables are built from them with set-based ``GROUP BY`` statements,
not through the ingest: this part measures query speed at that size, not
ingest. The service is then started on that database and the dashboard
routes are timed with sequential GETs, against ``GET /healthz`` of the same
process in the same rounds.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from aiokafka import TopicPartition

from bench._registry import Details, Figures, RunOptions, add_ratio, add_target, benchmark
from bench._services import (
    FETCH_MAX_RECORDS,
    N_ITEMS,
    ConsumingService,
    ServiceBenchFailed,
    batch_means,
    cpu_seconds,
    cpu_shares,
    fetch_all,
    median,
    produce,
    run_loop,
    service_env,
    start_experiment,
    temporary_stack,
)
from cineamate.common.events import (
    ClickEvent,
    Event,
    LateClick,
    RewardedItem,
    ServeEvent,
)
from cineamate.common.kafka import OutgoingMessage
from cineamate.common.latency import BUCKET_BOUNDS_MS, BUCKETS
from cineamate.reward.synthetic import Stream, generate, reward_of
from cineamate.stack.local import LocalStack

# (variant, policy type); the last one is the control.
VARIANTS = (("ts", "thompson"), ("eg", "egreedy"), ("ucb", "ucb1"), ("control", "random"))
CATALOGUE = list(range(1, N_ITEMS + 1))
SLATE_SIZE = 10
CLICK_RATE = 0.05
RUNS = 3
SEED = 1_000_237
INPUT_PARTITIONS = 6
STREAM_WINDOW = timedelta(seconds=30)
STREAM_SPACING = timedelta(milliseconds=3)
STREAM_START = datetime(2026, 3, 1, tzinfo=UTC)
# Input messages per serve: the serve, its clicks (10% twice, 2% late), a reward per
# clicked item, one window-close reward and the late clicks.
MESSAGES_PER_SERVE = 1 + SLATE_SIZE * CLICK_RATE * (1.1 + 1) + 1 + 2 * 0.02
COHORT_VALUES = {
    "user_type": ("new", "returning", "power"),
    "device": ("mobile", "desktop", "tv"),
    "age": ("18-24", "25-34", "35-49", "50+"),
}
# API latency: the loaded experiment.
LOAD_START = datetime(2026, 2, 1, tzinfo=UTC)
LOAD_DAYS = 14
LOAD_USERS = 100_000
REWARDED_SHARE = 0.9  # the newest 10% of serves have no outcome yet
API_WARMUP_ROUNDS = 20
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "summary": ("summary", {}),
    "timeseries": ("timeseries", {}),
    "timeseries_1h": ("timeseries", {"interval": "1h"}),
    "arms": ("arms", {"limit": 20}),
    "cohorts": ("cohorts", {"by": "user_type"}),
    "latency": ("latency", {}),
}
TARGET_EVENTS_PER_S = 20_000.0
TARGET_P95_MS = 50.0
_INGEST_SPEC = "spec: one instance ingests at least 20,000 events/s (<= 50 us per event)"
_API_SPEC = "spec: with 10 million raw events loaded, p95 at most 50 ms"


class AnalyticsBenchFailed(ServiceBenchFailed):
    """The analytics service stored or counted something other than its input calls for."""


def _analytics_env(stack: LocalStack, tag: str) -> dict[str, str]:
    env = service_env(stack, tag)
    env["CINEAMATE_ANALYTICS_CONSUMER_GROUP"] = f"analytics-{tag}"
    return env


def _prepare(stack: LocalStack, name: str) -> tuple[dict[str, str], str]:
    """Fresh topics, consumer group and running experiment; the environment and its id."""
    tag = uuid.uuid4().hex[:8]
    env = _analytics_env(stack, tag)
    experiment_id = f"bench-{tag}"
    start_experiment(
        env,
        experiment_id,
        name,
        VARIANTS,
        reward_window_hours=STREAM_WINDOW.total_seconds() / 3600,
    )
    return env, experiment_id


def _inputs(env: dict[str, str]) -> list[TopicPartition]:
    partitions = {"serves": INPUT_PARTITIONS, "clicks": INPUT_PARTITIONS}
    partitions |= {"rewards": INPUT_PARTITIONS, "late_clicks": 1}
    return [
        TopicPartition(env[f"CINEAMATE_{name.upper()}_TOPIC"], number)
        for name, count in partitions.items()
        for number in range(count)
    ]


class _Service(ConsumingService):
    """One analytics service process."""

    failure = AnalyticsBenchFailed

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        group = env["CINEAMATE_ANALYTICS_CONSUMER_GROUP"]
        super().__init__("analytics", env, log_path, group, _inputs(env))

    summed = {
        "cineamate_analytics_ingested_total": "ingested",
        "cineamate_analytics_expired_total": "expired",
        "cineamate_dead_letters_total": "dead_letters",
    }


def _cohort(user_id: str) -> dict[str, str]:
    number = int(user_id.removeprefix("u"))
    return {
        attribute: values[(number // 7**rank) % len(values)]
        for rank, (attribute, values) in enumerate(COHORT_VALUES.items())
    }


def _mix(stream: Stream, experiment_id: str) -> tuple[list[tuple[str, Event]], dict[str, Any]]:
    """The stream's serves and clicks, and the rewards and late clicks the reward service
    makes of them, in event-time order; with the per-variant totals they must add up to."""
    timed: list[tuple[datetime, str, Event]] = []
    serves: dict[str, ServeEvent] = {}
    first_click: dict[tuple[str, int], datetime] = {}
    late: list[ClickEvent] = []
    for event in stream.events:
        if isinstance(event, ServeEvent):
            serve = event.model_copy(update={"cohort": _cohort(event.user_id)})
            serves[serve.serve_id] = serve
            timed.append((serve.served_at, "serves", serve))
            continue
        timed.append((event.clicked_at, "clicks", event))
        if event.clicked_at >= serves[event.serve_id].served_at + STREAM_WINDOW:
            late.append(event)
            continue
        key = (event.serve_id, event.item_id)
        first_click[key] = min(first_click.get(key, event.clicked_at), event.clicked_at)
    truth = {
        "serves": Counter[str](),
        "outcomes": Counter[str](),
        "rewards": Counter[str](),
        "late_clicks": Counter[str](),
    }

    for serve in serves.values():
        truth["serves"][serve.variant] += 1
        unclicked = []
        for served in serve.items:
            clicked_at = first_click.get((serve.serve_id, served.item_id))
            outcome = RewardedItem(
                item_id=served.item_id,
                position=served.position,
                propensity=served.propensity,
                reward=0.0 if clicked_at is None else 1.0,
            )
            truth["outcomes"][serve.variant] += 1
            if clicked_at is None:
                unclicked.append(outcome)
            else:
                truth["rewards"][serve.variant] += 1
                timed.append((clicked_at, "rewards", reward_of(serve, [outcome], clicked_at)))
        closed_at = serve.served_at + STREAM_WINDOW
        if unclicked:
            timed.append((closed_at, "rewards", reward_of(serve, unclicked, closed_at)))
    for click in late:
        serve = serves[click.serve_id]
        truth["late_clicks"][serve.variant] += 1
        late_click = LateClick(
            serve_id=click.serve_id,
            experiment_id=experiment_id,
            variant=serve.variant,
            item_id=click.item_id,
            user_id=click.user_id,
            clicked_at=click.clicked_at,
            window_closed_at=serve.served_at + STREAM_WINDOW,
        )
        timed.append((click.clicked_at, "late_clicks", late_click))
    timed.sort(key=lambda entry: entry[0])
    topic_counts = Counter(topic for _, topic, _ in timed)
    return [(topic, event) for _, topic, event in timed], {
        "truth": {name: dict(counts) for name, counts in truth.items()},
        "messages_per_topic": dict(topic_counts),
    }


# Each aggregate next to the same figures recomputed from the raw tables ($1: experiment).
_RECOMPUTED = {
    "analytics_variant_totals": (
        "SELECT variant, serves, outcomes, rewards, late_clicks FROM analytics_variant_totals "
        "WHERE experiment_id = $1",
        "SELECT variant, sum(serves)::bigint, sum(outcomes)::bigint, sum(rewards), "
        "sum(late)::bigint FROM ("
        " SELECT variant, 1 AS serves, 0 AS outcomes, 0.0 AS rewards, 0 AS late "
        " FROM analytics_serves WHERE experiment_id = $1 UNION ALL"
        " SELECT variant, 0, 1, reward, 0 FROM analytics_rewards WHERE experiment_id = $1"
        " UNION ALL SELECT variant, 0, 0, 0.0, 1 FROM analytics_late_clicks"
        " WHERE experiment_id = $1) raw GROUP BY 1",
    ),
    "analytics_variant_minutes": (
        "SELECT variant, minute, serves, outcomes, rewards, late_clicks "
        "FROM analytics_variant_minutes WHERE experiment_id = $1",
        "SELECT variant, minute, sum(serves)::bigint, sum(outcomes)::bigint, sum(rewards), "
        "sum(late)::bigint FROM ("
        " SELECT variant, date_trunc('minute', served_at) AS minute, 1 AS serves, 0 AS outcomes,"
        " 0.0 AS rewards, 0 AS late FROM analytics_serves WHERE experiment_id = $1 UNION ALL"
        " SELECT variant, date_trunc('minute', served_at), 0, 1, reward, 0"
        " FROM analytics_rewards WHERE experiment_id = $1 UNION ALL"
        " SELECT variant, date_trunc('minute', clicked_at), 0, 0, 0.0, 1"
        " FROM analytics_late_clicks WHERE experiment_id = $1) raw GROUP BY 1, 2",
    ),
    "analytics_item_totals": (
        "SELECT variant, item_id, serves, outcomes, rewards FROM analytics_item_totals "
        "WHERE experiment_id = $1",
        "SELECT variant, item_id, sum(serves)::bigint, sum(outcomes)::bigint, sum(rewards) FROM ("
        " SELECT variant, unnest(item_ids) AS item_id, 1 AS serves, 0 AS outcomes,"
        " 0.0 AS rewards FROM analytics_serves WHERE experiment_id = $1 UNION ALL"
        " SELECT variant, item_id, 0, 1, reward FROM analytics_rewards WHERE experiment_id = $1"
        ") raw GROUP BY 1, 2",
    ),
    "analytics_cohorts": (
        "SELECT variant, attribute, value, serves, outcomes, rewards FROM analytics_cohorts "
        "WHERE experiment_id = $1",
        "SELECT variant, kv.key, kv.value, sum(serves)::bigint, sum(outcomes)::bigint, "
        "sum(rewards) FROM ("
        " SELECT variant, cohort, 1 AS serves, 0 AS outcomes, 0.0 AS rewards"
        " FROM analytics_serves WHERE experiment_id = $1 UNION ALL"
        " SELECT variant, cohort, 0, 1, reward FROM analytics_rewards WHERE experiment_id = $1"
        ") raw, jsonb_each_text(raw.cohort) AS kv GROUP BY 1, 2, 3",
    ),
    "analytics_users": (
        "SELECT user_id, variant, first_seen, last_seen, serves FROM analytics_users "
        "WHERE experiment_id = $1",
        "SELECT user_id, (array_agg(variant ORDER BY served_at DESC))[1], min(served_at), "
        "max(served_at), count(*) FROM analytics_serves WHERE experiment_id = $1 GROUP BY 1",
    ),
}


async def _check_tables(
    database_url: str, experiment_id: str, truth: dict[str, dict[str, int]]
) -> list[str]:
    """What differs between the aggregates, the raw tables and the stream's known answer."""
    errors = []
    connection = await asyncpg.connect(database_url)
    try:
        for table, (kept, recomputed) in _RECOMPUTED.items():
            differing = await connection.fetchval(
                f"SELECT count(*) FROM (({kept}) EXCEPT ({recomputed})) a",
                experiment_id,
            ) + await connection.fetchval(
                f"SELECT count(*) FROM (({recomputed}) EXCEPT ({kept})) b", experiment_id
            )
            if differing:
                errors.append(f"{table}: {differing} rows differ from the raw recomputation")
        rows = await connection.fetch(
            "SELECT variant, serves, outcomes, rewards, late_clicks "
            "FROM analytics_variant_totals WHERE experiment_id = $1",
            experiment_id,
        )
    finally:
        await connection.close()
    stored = {name: {row["variant"]: int(row[name]) for row in rows if row[name]} for name in truth}
    for name, expected in truth.items():
        if stored[name] != expected:
            errors.append(f"{name} per variant {stored[name]}, expected {expected}")
    return errors


async def _measure_ingest(
    env: dict[str, str],
    experiment_id: str,
    truth: dict[str, dict[str, int]],
    expected: int,
    log_path: Path,
    server_pids: dict[str, int | None],
) -> dict[str, Any]:
    """Start the service on the pre-produced mix; time how fast the group commits it."""
    service = _Service(env, log_path)
    try:
        window = await service.drain(expected, server_pids)
        # A double count would land after the last commit.
        await asyncio.sleep(1.0)
        metrics = await service.metrics()
    finally:
        await service.stop()
    errors = await _check_tables(env["DATABASE_URL"], experiment_id, truth)
    if metrics["dead_letters"] or metrics["batch_failures"] or metrics["expired"]:
        errors.append(
            f"{metrics['dead_letters']:g} dead letters, {metrics['batch_failures']:g} failed "
            f"batches and {metrics['expired']:g} expired events, expected none"
        )
    committed = window.pop("committed")
    if committed != expected:
        errors.append(f"{committed} events committed, expected {expected}")
    del window["metrics_at_first"], window["metrics_at_done"]
    return {**window, "consumer_metrics": metrics, **batch_means(metrics), "errors": errors}


def _ingest_run(stack: LocalStack, home: Path, events: int, number: int) -> dict[str, Any]:
    """Fresh topics and experiment, the mix produced, the baseline, then the service."""
    env, experiment_id = _prepare(stack, "analytics ingest benchmark")
    stream = generate(
        experiment_id,
        serves=round(events / MESSAGES_PER_SERVE),
        variants=tuple(name for name, _ in VARIANTS),
        catalogue=CATALOGUE,
        start=STREAM_START,
        window=STREAM_WINDOW,
        spacing=STREAM_SPACING,
        slate_size=SLATE_SIZE,
        click_rate=CLICK_RATE,
        seed=SEED + number,
        prefix=f"s{SEED + number}-",
    )
    mix, described = _mix(stream, experiment_id)
    messages = [
        OutgoingMessage.of(env[f"CINEAMATE_{topic.upper()}_TOPIC"], event) for topic, event in mix
    ]
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    expected = len(messages)
    produce_s = run_loop(lambda: produce(bootstrap, messages, "bench-analytics"))
    baseline = run_loop(lambda: fetch_all(bootstrap, _inputs(env), expected))
    server_pids = {server.name: server.pid for server in stack.embedded}
    log_path = home / f"analytics-{experiment_id}.log"
    truth = described["truth"]
    measured = run_loop(
        lambda: _measure_ingest(env, experiment_id, truth, expected, log_path, server_pids)
    )
    return {
        "experiment_id": experiment_id,
        "input_events": expected,
        **described,
        "produce_per_s": expected / produce_s,
        "baseline_kafka_consume_per_s": baseline["per_s"],
        **measured,
    }


# The raw rows: serve n (0-based) of the load, its user, variant, cohort and slate. A slate
# is 10 consecutive popularity ranks from a log-uniform rank (p ~ 1/rank), mapped to item
# ids by a fixed permutation (1543 is prime to 3706).
_SERVES_SQL = f"""
INSERT INTO analytics_serves (serve_id, experiment_id, variant, policy_type, user_id, cohort,
    item_ids, propensities, state_version, latency_ms, status, served_at)
SELECT 'v' || n, $1, ($4::text[])[u % 4 + 1], ($5::text[])[u % 4 + 1], 'u' || u,
    jsonb_build_object(
        'user_type', (ARRAY['new', 'returning', 'power'])[u % 3 + 1],
        'device', (ARRAY['mobile', 'desktop', 'tv'])[(u / 7) % 3 + 1],
        'age', (ARRAY['18-24', '25-34', '35-49', '50+'])[(u / 49) % 4 + 1]),
    ARRAY(SELECT (((top_rank + k) % {N_ITEMS}) * 1543 % {N_ITEMS}) + 1
          FROM generate_series(0, {SLATE_SIZE - 1}) AS k ORDER BY k),
    array_fill(0.1::float8, ARRAY[{SLATE_SIZE}]), n / 10000,
    2.0 + 8.0 * -ln(1.0 - random()), CASE WHEN n % 1000 = 7 THEN 'error' ELSE 'ok' END,
    $6::timestamptz + n * $7::interval
FROM generate_series($2::bigint, $3::bigint - 1) AS n,
    LATERAL (SELECT (hashint8(n)::bigint & 2147483647) % $8 AS u,
                    floor(exp(random() * ln({N_ITEMS})))::bigint - 1 AS top_rank) AS drawn
"""
# Every served item's outcome: a click (CTR by variant, falling with position) within
# 10 minutes, else 0 when the 30-minute window closes.
_REWARDS_SQL = """
INSERT INTO analytics_outcomes (serve_id, experiment_id, variant, policy_type, user_id, cohort,
    served_at, item_ids, positions, propensities, rewards, rewarded_ats)
SELECT s.serve_id, s.experiment_id, s.variant, s.policy_type, s.user_id, s.cohort, s.served_at,
    o.item_ids, o.positions, o.propensities, o.rewards, o.rewarded_ats
FROM analytics_serves s, LATERAL (
    SELECT array_agg(item_id ORDER BY ord) AS item_ids,
        array_agg(ord::int - 1 ORDER BY ord) AS positions,
        array_agg(propensity ORDER BY ord) AS propensities,
        array_agg(reward ORDER BY ord) AS rewards,
        array_agg(s.served_at + CASE WHEN reward > 0 THEN delay * INTERVAL '10 minutes'
                                     ELSE INTERVAL '30 minutes' END ORDER BY ord) AS rewarded_ats
    FROM (
        SELECT item.item_id, item.ord, item.propensity,
            CASE WHEN random() < (0.04 + 0.005 * array_position($2::text[], s.variant))
                 * (1.3 - 0.06 * item.ord) THEN 1.0 ELSE 0.0 END AS reward,
            random() AS delay
        FROM unnest(s.item_ids, s.propensities) WITH ORDINALITY AS item(item_id, propensity, ord)
    ) outcome
) o
WHERE s.experiment_id = $1 AND s.served_at >= $3 AND s.served_at < $4
"""
# Latency buckets per serve, as cineamate.common.latency.bucket_of: bounds below the latency.
_BUCKETS_TABLE = (
    "CREATE TEMP TABLE bench_buckets (variant text, minute timestamptz, i int, n bigint)"
)
_BUCKETS_SQL = """
INSERT INTO bench_buckets
SELECT variant, minute, i, count(*) FROM (
    SELECT variant, date_trunc('minute', served_at) AS minute,
        (SELECT count(*) FROM unnest($2::float8[]) AS bound WHERE bound < latency_ms)::int AS i
    FROM analytics_serves WHERE experiment_id = $1
) bucketed GROUP BY 1, 2, 3
"""


def _histograms(keys: str) -> str:
    """Dense latency histograms per ``keys`` from bench_buckets."""
    return (
        f"SELECT {keys}, array_agg(coalesce(c.n, 0)::bigint ORDER BY g.i) AS buckets "
        f"FROM (SELECT DISTINCT {keys} FROM bench_buckets) k "
        f"CROSS JOIN generate_series(0, {BUCKETS - 1}) AS g(i) "
        f"LEFT JOIN (SELECT {keys}, i, sum(n) AS n FROM bench_buckets GROUP BY {keys}, i) c "
        f"USING ({keys}, i) GROUP BY {keys}"
    )


_AGGREGATES_SQL = (
    f"""
INSERT INTO analytics_variant_minutes
SELECT $1, s.variant, s.minute, s.serves, s.errors, s.within_sla, s.latency_sum_ms, h.buckets,
    coalesce(o.outcomes, 0), coalesce(o.rewards, 0), 0
FROM (SELECT variant, date_trunc('minute', served_at) AS minute, count(*) AS serves,
          count(*) FILTER (WHERE status <> 'ok') AS errors,
          count(*) FILTER (WHERE latency_ms <= $2) AS within_sla,
          sum(latency_ms) AS latency_sum_ms
      FROM analytics_serves WHERE experiment_id = $1 GROUP BY 1, 2) s
JOIN ({_histograms("variant, minute")}) h USING (variant, minute)
LEFT JOIN (SELECT variant, date_trunc('minute', served_at) AS minute, count(*) AS outcomes,
               sum(reward) AS rewards
           FROM analytics_rewards WHERE experiment_id = $1 GROUP BY 1, 2) o
    USING (variant, minute)
""",
    # The time series reads the hourly rows' counts, not their latency histograms.
    """
INSERT INTO analytics_variant_hours
SELECT $1, variant, date_trunc('hour', minute), sum(serves), sum(errors), sum(within_sla),
    sum(latency_sum_ms), '{}'::bigint[], sum(outcomes), sum(rewards), sum(late_clicks)
FROM analytics_variant_minutes WHERE experiment_id = $1 GROUP BY 2, 3
""",
    f"""
INSERT INTO analytics_variant_totals
SELECT $1, variant, sum(serves), sum(errors), sum(within_sla), sum(latency_sum_ms),
    (SELECT h.buckets FROM ({_histograms("variant")}) h WHERE h.variant = m.variant),
    sum(outcomes), sum(rewards), 0
FROM analytics_variant_minutes m WHERE experiment_id = $1 GROUP BY variant
""",
    """
INSERT INTO analytics_item_hours
SELECT $1, variant, item_id, hour, sum(serves), sum(outcomes), sum(rewards) FROM (
    SELECT variant, unnest(item_ids) AS item_id, date_trunc('hour', served_at) AS hour,
        1 AS serves, 0 AS outcomes, 0.0 AS rewards
    FROM analytics_serves WHERE experiment_id = $1
    UNION ALL
    SELECT variant, item_id, date_trunc('hour', served_at), 0, 1, reward
    FROM analytics_rewards WHERE experiment_id = $1
) raw GROUP BY 1, 2, 3, 4
""",
    """
INSERT INTO analytics_item_totals
SELECT $1, variant, item_id, sum(serves), sum(outcomes), sum(rewards)
FROM analytics_item_hours WHERE experiment_id = $1 GROUP BY 1, 2, 3
""",
    """
INSERT INTO analytics_cohorts
SELECT $1, variant, kv.key, kv.value, sum(serves), sum(outcomes), sum(rewards) FROM (
    SELECT variant, cohort, count(*) AS serves, 0 AS outcomes, 0.0 AS rewards
    FROM analytics_serves WHERE experiment_id = $1 GROUP BY 1, 2
    UNION ALL
    SELECT variant, cohort, 0, count(*), sum(reward)
    FROM analytics_rewards WHERE experiment_id = $1 GROUP BY 1, 2
) raw, jsonb_each_text(raw.cohort) AS kv GROUP BY 1, 2, 3, 4
""",
    """
INSERT INTO analytics_users
SELECT $1, user_id, (array_agg(variant ORDER BY served_at DESC))[1], min(served_at),
    max(served_at), count(*)
FROM analytics_serves WHERE experiment_id = $1 GROUP BY user_id
""",
    """
INSERT INTO analytics_arm_posteriors
SELECT $1, variant, item_id, outcomes, rewards, 1
FROM analytics_item_totals WHERE experiment_id = $1
""",
)
_AGGREGATE_TABLES = (
    "analytics_variant_minutes",
    "analytics_variant_hours",
    "analytics_variant_totals",
    "analytics_item_hours",
    "analytics_item_totals",
    "analytics_cohorts",
    "analytics_users",
    "analytics_arm_posteriors",
)


async def _load(database_url: str, experiment_id: str, rows: int) -> dict[str, Any]:
    """``rows`` raw rows (a tenth serves, the rest their outcomes) and their aggregates."""
    serves = round(rows / (1 + SLATE_SIZE * REWARDED_SHARE))
    rewarded = round(serves * REWARDED_SHARE)
    span = timedelta(days=LOAD_DAYS)
    step = span / serves
    variants = [name for name, _ in VARIANTS]
    policy_types = [policy_type for _, policy_type in VARIANTS]
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SET work_mem = '1GB'")
        await connection.execute("SELECT setseed(0.5)")
        started = time.perf_counter()
        for day in range(LOAD_DAYS):
            start = LOAD_START + timedelta(days=day)
            for table in ("analytics_serves", "analytics_outcomes"):
                await connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {table}_p{start:%Y%m%d} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{start.isoformat()}') "
                    f"TO ('{(start + timedelta(days=1)).isoformat()}')"
                )
        # A day's worth of serves, and their outcomes, per statement.
        per_chunk = -(-serves // LOAD_DAYS)
        for first in range(0, serves, per_chunk):
            last = min(first + per_chunk, serves)
            await connection.execute(
                _SERVES_SQL,
                experiment_id,
                first,
                last,
                variants,
                policy_types,
                LOAD_START,
                step,
                LOAD_USERS,
            )
            await connection.execute(
                _REWARDS_SQL,
                experiment_id,
                variants,
                LOAD_START + step * first,
                LOAD_START + step * min(last, rewarded),
            )
        raw_s = time.perf_counter() - started
        started = time.perf_counter()
        await connection.execute(_BUCKETS_TABLE)
        await connection.execute(_BUCKETS_SQL, experiment_id, list(BUCKET_BOUNDS_MS))
        sla = await connection.fetchval(
            "SELECT (config->'guardrails'->>'latency_p95_ms')::float8 FROM experiments "
            "WHERE id = $1",
            experiment_id,
        )
        for statement in _AGGREGATES_SQL:
            args = (experiment_id, sla) if "$2" in statement else (experiment_id,)
            await connection.execute(statement, *args)
        aggregate_s = time.perf_counter() - started
        started = time.perf_counter()
        await connection.execute(f"VACUUM (ANALYZE) {', '.join(_AGGREGATE_TABLES)}")
        await connection.execute("ANALYZE analytics_serves, analytics_outcomes")
        vacuum_s = time.perf_counter() - started
        counts = {
            table: await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE experiment_id = $1", experiment_id
            )
            for table in ("analytics_serves", "analytics_rewards", *_AGGREGATE_TABLES)
        }
    finally:
        await connection.close()
    return {
        "raw_rows": counts["analytics_serves"] + counts["analytics_rewards"],
        "serves": serves,
        "rewarded_serves": rewarded,
        "days": LOAD_DAYS,
        "users": LOAD_USERS,
        "raw_load_s": raw_s,
        "aggregate_s": aggregate_s,
        "vacuum_analyze_s": vacuum_s,
        "rows_per_table": counts,
    }


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ms = np.array(samples_ns, dtype=float) / 1e6
    return {
        "samples": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


async def _get_ns(http: httpx.AsyncClient, path: str, params: dict[str, Any]) -> int:
    """One GET, its time in ns; raises unless it answered 200."""
    before = time.perf_counter_ns()
    answer = await http.get(path, params=params)
    elapsed = time.perf_counter_ns() - before
    if answer.status_code != 200:
        raise AnalyticsBenchFailed(f"GET {path} answered {answer.status_code}: {answer.text[:500]}")
    return elapsed


async def _time_routes(
    env: dict[str, str],
    experiment_id: str,
    rounds: int,
    log_path: Path,
    server_pids: dict[str, int | None],
) -> dict[str, Any]:
    """Start the service; sequential GETs, every route once per round (``/healthz`` first),
    after a warm-up."""
    prefix = f"/api/experiments/{experiment_id}/"
    requests: dict[str, tuple[str, dict[str, Any]]] = {"healthz": ("/healthz", {})} | {
        name: (prefix + path, params) for name, (path, params) in ROUTES.items()
    }
    samples: dict[str, list[int]] = {name: [] for name in requests}
    service = _Service(env, log_path)
    http = httpx.AsyncClient(base_url=service.base_url, headers=service.headers, timeout=30)
    try:
        await service.wait_ready(service.started + 60)
        for _ in range(API_WARMUP_ROUNDS):
            for path, params in requests.values():
                await _get_ns(http, path, params)
        pids = {"service": service.process.pid, **server_pids, "bench": os.getpid()}
        cpu_at_start = cpu_seconds(pids)
        started = time.perf_counter()
        for _ in range(rounds):
            for name, (path, params) in requests.items():
                samples[name].append(await _get_ns(http, path, params))
        window = time.perf_counter() - started
        cpu_at_end = cpu_seconds(pids)
        sizes = {
            name: len((await http.get(path, params=params)).content)
            for name, (path, params) in requests.items()
        }
        totals = (await http.get(prefix + "summary")).json()["totals"]
    finally:
        await http.aclose()
        await service.stop()
    return {
        "routes": {name: _percentiles(times) for name, times in samples.items()},
        "response_bytes": sizes,
        "window_s": window,
        "cpu_share_in_window": cpu_shares(cpu_at_start, cpu_at_end, window),
        "summary_totals": totals,
    }


def _api_run(stack: LocalStack, home: Path, rows: int, rounds: int) -> dict[str, Any]:
    """Load the experiment's raw rows and aggregates, start the service, time the routes."""
    env, experiment_id = _prepare(stack, "analytics API benchmark")
    env["CINEAMATE_ANALYTICS_RETENTION_DAYS"] = "0"
    started = time.perf_counter()
    load = run_loop(lambda: _load(env["DATABASE_URL"], experiment_id, rows))
    load["load_s"] = time.perf_counter() - started
    server_pids = {server.name: server.pid for server in stack.embedded}
    log_path = home / f"analytics-{experiment_id}.log"
    timed = run_loop(lambda: _time_routes(env, experiment_id, rounds, log_path, server_pids))
    totals = timed["summary_totals"]
    counts = load["rows_per_table"]
    errors = [
        f"summary counts {totals[figure]} {figure}, loaded {counts[table]}"
        for figure, table in (("serves", "analytics_serves"), ("rewards", "analytics_rewards"))
        if totals[figure] != counts[table]
    ]
    return {
        "experiment_id": experiment_id,
        "rounds": rounds,
        "load": load,
        **timed,
        "errors": errors,
    }


@benchmark("analytics")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """Events/s ingested by one analytics service, vs bare Kafka fetch; API p95 at 10M rows."""
    events = options.repeats(200_000, 60_000)
    runs_count = options.repeats(RUNS, 1)
    rows = options.repeats(10_000_000, 1_000_000)
    rounds = options.repeats(200, 50)
    runs: list[dict[str, Any]] = []
    with temporary_stack(lambda stack: _analytics_env(stack, "migrate")) as (stack, home):
        for number in range(runs_count):
            runs.append(_ingest_run(stack, home, events, number))
        api = _api_run(stack, home, rows, rounds)

    # The rates go into the message for diagnosis only: a wrong answer reports no figures.
    wrong = [
        f"run {n} ({r['events_per_s']:,.0f} events/s): {'; '.join(r['errors'])}"
        for n, r in enumerate(runs)
        if r["errors"]
    ]
    if api["errors"]:
        wrong.append(f"API at {rows:,} rows: {'; '.join(api['errors'])}")
    if wrong:
        raise AnalyticsBenchFailed(" | ".join(wrong))

    events_per_s = median(runs, "events_per_s")
    load = api["load"]
    figures: Figures = {
        "baseline_analytics_kafka_consume_per_s": median(runs, "baseline_kafka_consume_per_s"),
        "analytics_ingest_events_per_s": events_per_s,
        "analytics_ingest_event_us": 1e6 / events_per_s,
        "analytics_ingest_cpu_per_event_us": median(runs, "service_cpu_us_per_event"),
        "analytics_ingest_events_per_s_from_ready": median(runs, "events_per_s_from_ready"),
        "analytics_start_s": median(runs, "start_s"),
        "analytics_first_commit_s": median(runs, "first_commit_s"),
        "analytics_ingest_end_to_end_s": median(runs, "end_to_end_s"),
        "analytics_load_raw_rows": float(load["raw_rows"]),
        "analytics_load_s": load["load_s"],
        "analytics_load_raw_s": load["raw_load_s"],
        "analytics_load_aggregate_s": load["aggregate_s"],
    }
    healthz = api["routes"]["healthz"]
    for percentile in ("p50", "p95", "p99"):
        figures[f"baseline_analytics_healthz_{percentile}_ms"] = healthz[f"{percentile}_ms"]
    details: Details = {
        "config": {
            "input_events": events,
            "runs": runs_count,
            "input_partitions": INPUT_PARTITIONS,
            "slate_size": SLATE_SIZE,
            "click_rate": CLICK_RATE,
            "catalogue": f"item ids 1..{N_ITEMS}",
            "variants": [name for name, _ in VARIANTS],
            "cohorts": {name: list(values) for name, values in COHORT_VALUES.items()},
            "stream_window_s": STREAM_WINDOW.total_seconds(),
            "stream_spacing_ms": STREAM_SPACING.total_seconds() * 1_000,
            "fetch_max_records": FETCH_MAX_RECORDS,
            "api_rows": rows,
            "api_days": LOAD_DAYS,
            "api_users": LOAD_USERS,
            "api_rounds": rounds,
            "api_warmup_rounds": API_WARMUP_ROUNDS,
            "routes": {name: {"path": path, **params} for name, (path, params) in ROUTES.items()},
            "seed": SEED,
        },
        "runs": runs,
        "api": api,
        "batch_records_mean": median(runs, "batch_records_mean"),
        "batch_ms_mean": median(runs, "batch_ms_mean"),
        "records_per_processing_s": median(runs, "records_per_processing_s"),
    }
    add_ratio(
        figures, details, "analytics_ingest_events_per_s", "baseline_analytics_kafka_consume_per_s"
    )
    add_target(
        details, figures, "analytics_ingest_event_us", 1e6 / TARGET_EVENTS_PER_S, _INGEST_SPEC
    )
    for route in ROUTES:
        timing = api["routes"][route]
        for percentile in ("p50", "p95", "p99"):
            figures[f"analytics_api_{percentile}_ms_{route}"] = timing[f"{percentile}_ms"]
        figure = f"analytics_api_p95_ms_{route}"
        add_ratio(figures, details, figure, "baseline_analytics_healthz_p95_ms")
        add_target(details, figures, figure, TARGET_P95_MS, _API_SPEC)
    return figures, details
