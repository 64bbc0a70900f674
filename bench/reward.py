"""Join throughput and click-to-reward latency of one reward service process.

The service (``cineamate serve reward``) runs as its own process against the
embedded broker, PostgreSQL and Redis of a ``LocalStack`` started for the
benchmark. Every run has fresh topics (``serves`` and ``clicks`` with 6
partitions each), a fresh experiment and a fresh consumer group.

Throughput: a synthetic stream with a known answer is produced before the
service starts. The rate counts the input events committed by the service's
consumer group between the first commit and the commit of the last input
event, so neither the process start nor the group join (about 5 s on Tansu)
is in it; both are reported apart. A run counts only if the rewards,
deduplicated by id, are exactly the stream's outcomes. The same-run baseline
is a bare aiokafka consumer fetching the same input with ``getmany``.

Latency: with the service running, the benchmark produces live serves and
clicks (event time = now) at a planned, open-loop rate. A click's latency is
the broker timestamp of its reward minus that of the click, both producer
CreateTime on this machine.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._registry import Details, Figures, RunOptions, add_ratio, add_target, benchmark
from bench._services import (
    FETCH_MAX_RECORDS,
    N_ITEMS,
    POLL_SECONDS,
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
from bench.learner import VARIANTS
from cineamate.common.events import (
    ClickEvent,
    DeadLetter,
    RewardEvent,
    ServedItem,
    ServeEvent,
    encode,
)
from cineamate.common.kafka import OutgoingMessage
from cineamate.reward.synthetic import Stream, generate
from cineamate.stack.local import LocalStack

CATALOGUE = list(range(1, N_ITEMS + 1))
SLATE_SIZE = 10
CLICK_RATE = 0.05
INPUT_PARTITIONS = 6
RUNS = 3
SEED = 1_000_223
# Throughput stream: the windows are short against the stream's event-time span
# (one serve every 3 ms), so most of them close while the service catches up.
STREAM_WINDOW = timedelta(seconds=30)
STREAM_SPACING = timedelta(milliseconds=3)
STREAM_START = datetime(2026, 3, 1, tzinfo=UTC)
# Input events per serve that ``generate`` makes: the serve, its clicks (10% of them
# twice) and 2% late clicks.
EVENTS_PER_SERVE = 1 + SLATE_SIZE * CLICK_RATE * 1.1 + 0.02
IDLE_AFTER_SECONDS = 1.0
# Latency: live events at a planned rate, clicked a short random delay after the serve.
LATENCY_RATE = 5_000.0
LATENCY_WINDOW = timedelta(seconds=30)
CLICK_DELAY_SECONDS = (0.05, 2.0)
WARMUP_RATE = 100.0
LATENCY_WARMUP_SECONDS = 2.0
TARGET_EVENTS_PER_S = 20_000.0
TARGET_P99_MS = 1_000.0
_THROUGHPUT_SPEC = "spec: one instance joins at least 20,000 input events/s (<= 50 us per event)"
_LATENCY_SPEC = "spec: at 5,000 events/s steady load, click-to-reward latency p99 is under 1 s"


class RewardBenchFailed(ServiceBenchFailed):
    """The reward service did not produce exactly the rewards its input calls for."""


def _reward_env(stack: LocalStack, tag: str) -> dict[str, str]:
    """The policy benchmark's environment, with the join's own group, partitions and clocks."""
    env = service_env(stack, tag)
    env["CINEAMATE_REWARDS_PARTITIONS"] = str(INPUT_PARTITIONS)
    env["CINEAMATE_REWARD_CONSUMER_GROUP"] = f"reward-{tag}"
    env["CINEAMATE_SERVES_PARTITIONS"] = str(INPUT_PARTITIONS)
    env["CINEAMATE_CLICKS_PARTITIONS"] = str(INPUT_PARTITIONS)
    env["CINEAMATE_REWARD_IDLE_AFTER_SECONDS"] = str(IDLE_AFTER_SECONDS)
    return env


def _prepare(stack: LocalStack, window: timedelta) -> tuple[dict[str, str], str]:
    """Fresh topics, consumer group and running experiment; the environment and its id."""
    tag = uuid.uuid4().hex[:8]
    env = _reward_env(stack, tag)
    experiment_id = f"bench-{tag}"
    start_experiment(
        env,
        experiment_id,
        "reward benchmark",
        VARIANTS,
        reward_window_hours=window.total_seconds() / 3600,
    )
    return env, experiment_id


def _topic(env: dict[str, str], name: str) -> str:
    return env[f"CINEAMATE_{name.upper()}_TOPIC"]


def _inputs(env: dict[str, str]) -> list[TopicPartition]:
    return [
        TopicPartition(_topic(env, name), partition)
        for name in ("serves", "clicks")
        for partition in range(INPUT_PARTITIONS)
    ]


class _Service(ConsumingService):
    """One reward service process."""

    failure = RewardBenchFailed

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(
            "reward", env, log_path, env["CINEAMATE_REWARD_CONSUMER_GROUP"], _inputs(env)
        )

    # The join's counters, and the messages the service's producer had acknowledged
    # (rewards, late clicks, dead letters).
    summed = {
        "cineamate_reward_held_clicks_total": "held_clicks",
        "cineamate_reward_duplicate_clicks_total": "duplicate_clicks",
        "cineamate_dead_letters_total": "dead_letters",
        "cineamate_producer_sent_total": "output_messages",
    }


async def _read_topic(
    bootstrap: str,
    topic: str,
    on_message: Callable[[Any], None],
    done: Callable[[], bool],
    *,
    timeout: float,
    settle: float,
) -> None:
    """Every message of ``topic`` from the start, until ``done()`` and ``settle`` s more, so
    anything extra still shows, or ``timeout`` s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        deadline = time.perf_counter() + timeout
        settle_until: float | None = None
        while time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for messages in batch.values():
                for message in messages:
                    on_message(message)
            if settle_until is None and done():
                settle_until = time.perf_counter() + settle
            if settle_until is not None and time.perf_counter() > settle_until:
                return
    finally:
        await consumer.stop()


def _stream(experiment_id: str, events: int, seed: int) -> Stream:
    return generate(
        experiment_id,
        serves=round(events / EVENTS_PER_SERVE),
        variants=tuple(name for name, _ in VARIANTS),
        catalogue=CATALOGUE,
        start=STREAM_START,
        window=STREAM_WINDOW,
        spacing=STREAM_SPACING,
        slate_size=SLATE_SIZE,
        click_rate=CLICK_RATE,
        seed=seed,
        prefix=f"s{seed}-",
    )


def _failures(metrics: dict[str, float]) -> list[str]:
    """What the service's own counters say went wrong."""
    if not metrics["dead_letters"] and not metrics["batch_failures"]:
        return []
    return [
        f"{metrics['dead_letters']:g} dead letters and {metrics['batch_failures']:g} "
        "failed batches, expected none"
    ]


async def _check_outputs(env: dict[str, str], stream: Stream, timeout: float) -> dict[str, Any]:
    """Read the rewards and late clicks; what differs from the stream's known answer."""
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    reward_to_values: dict[str, set[float]] = {}
    messages = 0

    def on_reward(message: Any) -> None:
        nonlocal messages
        messages += 1
        reward = RewardEvent.model_validate_json(message.value)
        for reward_id, item in zip(reward.reward_ids, reward.items, strict=True):
            reward_to_values.setdefault(reward_id, set()).add(item.reward)

    await _read_topic(
        bootstrap,
        _topic(env, "rewards"),
        on_reward,
        lambda: len(reward_to_values) >= len(stream.outcomes),
        timeout=timeout,
        settle=2.0,
    )
    late_ids: set[bytes] = set()
    await _read_topic(
        bootstrap,
        _topic(env, "late_clicks"),
        lambda message: late_ids.add(message.value),
        lambda: len(late_ids) >= stream.late_clicks,
        timeout=10.0,
        settle=0.5,
    )
    reason_to_count: dict[str, int] = {}

    def on_dead_letter(message: Any) -> None:
        reason = DeadLetter.model_validate_json(message.value).reason_code
        reason_to_count[reason] = reason_to_count.get(reason, 0) + 1

    await _read_topic(
        bootstrap,
        _topic(env, "dead_letter"),
        on_dead_letter,
        lambda: True,
        timeout=10.0,
        settle=1.0,
    )
    errors = []
    if reason_to_count:
        errors.append(f"dead letters, expected none: {reason_to_count}")
    conflicting = sum(len(values) > 1 for values in reward_to_values.values())
    outcomes = {reward_id: min(values) for reward_id, values in reward_to_values.items()}
    missing = len(stream.outcomes.keys() - outcomes.keys())
    extra = len(outcomes.keys() - stream.outcomes.keys())
    wrong = sum(
        outcomes[reward_id] != value
        for reward_id, value in stream.outcomes.items()
        if reward_id in outcomes
    )
    if conflicting or missing or extra or wrong:
        errors.append(
            f"rewards: {missing} missing, {extra} unexpected, {wrong} wrong, {conflicting} "
            f"with two values, out of {len(stream.outcomes)}"
        )
    if len(late_ids) != stream.late_clicks:
        errors.append(f"{len(late_ids)} late clicks, expected {stream.late_clicks}")
    return {
        "reward_messages": messages,
        "reward_ids": len(outcomes),
        "late_clicks": len(late_ids),
        "dead_letters": reason_to_count,
        "errors": errors,
    }


async def _measure_throughput(
    env: dict[str, str],
    stream: Stream,
    expected: int,
    log_path: Path,
    server_pids: dict[str, int | None],
) -> dict[str, Any]:
    """Start the service on the pre-produced stream; time how fast the group commits it."""
    service = _Service(env, log_path)
    try:
        window = await service.drain(expected, server_pids)
        # The idle watermark closes the last windows about a second after the input ends.
        check = await _check_outputs(env, stream, timeout=60 + expected / 5_000)
        metrics = await service.metrics()
    finally:
        await service.stop()
    errors = check.pop("errors") + _failures(metrics)
    committed = window.pop("committed")
    if committed != expected:
        errors.append(f"{committed} events committed, expected {expected}")
    at_first, at_done = window.pop("metrics_at_first"), window.pop("metrics_at_done")
    output_messages = at_done["output_messages"] - at_first["output_messages"]
    return {
        **window,
        "output_messages_in_window": output_messages,
        "output_messages_per_s": output_messages / window["window_s"],
        "consumer_metrics": metrics,
        **batch_means(metrics),
        **check,
        "errors": errors,
    }


def _throughput_run(stack: LocalStack, home: Path, events: int, number: int) -> dict[str, Any]:
    """Fresh topics and experiment, the stream produced, the baseline, then the service."""
    env, experiment_id = _prepare(stack, STREAM_WINDOW)
    stream = _stream(experiment_id, events, SEED + number)
    serves, clicks = _topic(env, "serves"), _topic(env, "clicks")
    messages = [
        OutgoingMessage.of(serves if isinstance(event, ServeEvent) else clicks, event)
        for event in stream.events
    ]
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    expected = len(messages)
    produce_s = run_loop(lambda: produce(bootstrap, messages, "bench-reward"))
    baseline = run_loop(lambda: fetch_all(bootstrap, _inputs(env), expected))
    server_pids = {server.name: server.pid for server in stack.embedded}
    log_path = home / f"reward-{experiment_id}.log"
    measured = run_loop(lambda: _measure_throughput(env, stream, expected, log_path, server_pids))
    return {
        "experiment_id": experiment_id,
        "input_events": expected,
        "serves": stream.serves,
        "clicks": expected - stream.serves,
        "duplicate_clicks": stream.duplicate_clicks,
        "expected_late_clicks": stream.late_clicks,
        "expected_reward_ids": len(stream.outcomes),
        "event_time_span_s": stream.serves * STREAM_SPACING.total_seconds(),
        "produce_per_s": expected / produce_s,
        "baseline_kafka_consume_per_s": baseline["per_s"],
        **measured,
    }


@dataclass(frozen=True, slots=True)
class _Planned:
    """One input event of the paced load: a serve, or a click on item ``item`` of it."""

    at: float  # seconds after the start of the load
    serve: int
    item: int | None = None


@dataclass
class _Load:
    """What the paced producer sent: click acknowledgements and send lags."""

    click_futures: dict[str, tuple[float, asyncio.Future[Any]]] = field(default_factory=dict)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)


def _plan(
    rate: float, seconds: float, first_serve: int, rng: np.random.Generator
) -> list[_Planned]:
    """Serves and clicks, ``rate`` events/s in all, for ``seconds``, in send order.

    Clicks come a short delay after their serve, so the full rate is reached after
    the longest delay; the clicks planned past ``seconds`` are left out."""
    serve_rate = rate / (1 + SLATE_SIZE * CLICK_RATE)
    count = int(serve_rate * seconds)
    planned = []
    for index in range(count):
        at = index / serve_rate
        serve = first_serve + index
        planned.append(_Planned(at, serve))
        clicked = np.flatnonzero(rng.random(SLATE_SIZE) < CLICK_RATE)
        for position in clicked.tolist():
            planned.append(_Planned(at + float(rng.uniform(*CLICK_DELAY_SECONDS)), serve, position))
    planned.sort(key=lambda entry: entry.at)
    return [entry for entry in planned if entry.at < seconds]


class _PacedProducer:
    """Open loop: each event goes out at its planned time, whatever the broker acknowledged."""

    def __init__(self, env: dict[str, str], experiment_id: str, seed: int) -> None:
        self._serves = _topic(env, "serves")
        self._clicks = _topic(env, "clicks")
        self._experiment_id = experiment_id
        self._rng = np.random.default_rng(seed)
        self._slates: dict[int, list[int]] = {}
        self._variants = [name for name, _ in VARIANTS]
        self._producer = AIOKafkaProducer(
            bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
            client_id="bench-reward-load",
            linger_ms=5,
            max_batch_size=262_144,
            acks="all",
        )
        self.next_serve = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    def serve_id(self, serve: int) -> str:
        return f"{self._experiment_id}-{serve}"

    async def run(
        self, plan: list[_Planned], load: _Load, until: asyncio.Future[Any] | None = None
    ) -> float:
        """Send ``plan`` from now (or until ``until`` is done); the start, perf_counter time."""
        for entry in plan:
            if entry.serve not in self._slates and entry.item is None:
                self._slates[entry.serve] = self._rng.choice(
                    CATALOGUE, SLATE_SIZE, replace=False
                ).tolist()
        started = time.perf_counter()
        for entry in plan:
            if until is not None and until.done():
                break
            due = started + entry.at
            wait = due - time.perf_counter()
            if wait > 0.001:
                await asyncio.sleep(wait)
            now = time.perf_counter()
            load.lags.append(now - due)
            load.sent_at.append(now)
            await self._send(entry, load)
            self.next_serve = max(self.next_serve, entry.serve + 1)
        return started

    async def _send(self, entry: _Planned, load: _Load) -> None:
        serve_id = self.serve_id(entry.serve)
        slate = self._slates[entry.serve]
        moment = datetime.now(UTC)
        event: ServeEvent | ClickEvent
        if entry.item is None:
            event = ServeEvent(
                serve_id=serve_id,
                experiment_id=self._experiment_id,
                variant=self._variants[entry.serve % len(self._variants)],
                policy_type="random",
                user_id=f"u{entry.serve}",
                items=[
                    ServedItem(item_id=item, position=position, propensity=0.1)
                    for position, item in enumerate(slate)
                ],
                state_version=0,
                latency_ms=1.0,
                served_at=moment,
            )
            topic = self._serves
        else:
            event = ClickEvent(
                serve_id=serve_id,
                item_id=slate[entry.item],
                user_id=f"u{entry.serve}",
                clicked_at=moment,
            )
            topic = self._clicks
        future = await self._producer.send(topic, encode(event), key=serve_id.encode())
        load.futures.append(future)
        if isinstance(event, ClickEvent):
            load.click_futures[f"{serve_id}:{event.item_id}"] = (entry.at, future)


async def _measure_latency(
    env: dict[str, str],
    experiment_id: str,
    seconds: float,
    log_path: Path,
    server_pids: dict[str, int | None],
) -> dict[str, Any]:
    """Live load at ``LATENCY_RATE`` after a trickle that lasts until the group has joined."""
    producer = _PacedProducer(env, experiment_id, SEED)
    rng = np.random.default_rng(SEED + 1)
    await producer.start()
    service = _Service(env, log_path)
    try:
        await service.wait_ready(service.started + 60)
        # A trickle until the first commit: the group has joined and the join is running.
        joined = asyncio.create_task(service.first_commit(service.started + 90))
        trickle = _Load()
        await producer.run(_plan(WARMUP_RATE, 120.0, 0, rng), trickle, until=joined)
        await joined
        first_commit = time.perf_counter() - service.started
        plan = _plan(LATENCY_RATE, LATENCY_WARMUP_SECONDS + seconds, producer.next_serve, rng)
        load = _Load()
        pids = {"service": service.process.pid, **server_pids, "bench": os.getpid()}
        started_at = time.perf_counter()
        cpu_at_start: dict[str, float] = {}

        async def snapshot_after_warmup() -> None:
            await asyncio.sleep(LATENCY_WARMUP_SECONDS)
            cpu_at_start.update(cpu_seconds(pids))

        snapshot = asyncio.create_task(snapshot_after_warmup())
        started = await producer.run(plan, load)
        await snapshot
        ended = time.perf_counter()
        cpu_at_end = cpu_seconds(pids)
        acknowledged = await asyncio.gather(*load.futures, return_exceptions=True)
        failed_sends = sum(isinstance(answer, BaseException) for answer in acknowledged)
        clicks: dict[str, int] = {}  # reward id -> click timestamp (ms), measured clicks only
        for reward_id, (at, future) in load.click_futures.items():
            if at >= LATENCY_WARMUP_SECONDS and not future.cancelled() and not future.exception():
                clicks[reward_id] = future.result().timestamp
        reward_to_timestamp: dict[str, int] = {}

        def on_reward(message: Any) -> None:
            reward = orjson.loads(message.value)
            for item in reward["items"]:
                if item["reward"] == 1.0:
                    reward_id = f"{reward['serve_id']}:{item['item_id']}"
                    earliest = reward_to_timestamp.get(reward_id, message.timestamp)
                    reward_to_timestamp[reward_id] = min(earliest, message.timestamp)

        await _read_topic(
            env["KAFKA_BOOTSTRAP_SERVERS"],
            _topic(env, "rewards"),
            on_reward,
            lambda: clicks.keys() <= reward_to_timestamp.keys(),
            timeout=30.0,
            settle=0.0,
        )
        metrics = await service.metrics()
    finally:
        await producer.stop()
        await service.stop()
    latencies_ms = np.array(
        [reward_to_timestamp[r] - ts for r, ts in clicks.items() if r in reward_to_timestamp],
        dtype=float,
    )
    missing = len(clicks) - len(latencies_ms)
    errors = _failures(metrics)
    if missing:
        errors.append(f"{missing} of {len(clicks)} measured clicks got no reward")
    if failed_sends:
        errors.append(f"{failed_sends} input events the broker did not acknowledge")
    if not len(latencies_ms):
        raise RewardBenchFailed("; ".join(errors) or "no click was measured")
    measured_from = started + LATENCY_WARMUP_SECONDS
    in_window = np.array([entry.at for entry in plan]) >= LATENCY_WARMUP_SECONDS
    sent_in_window = np.array(load.sent_at)[in_window]
    lags_ms = 1_000 * np.array(load.lags)[in_window]
    measured_events = int(np.count_nonzero(in_window))
    last_sent = float(sent_in_window.max())
    window = ended - measured_from
    return {
        "first_commit_s": first_commit,
        "trickle_events": len(trickle.sent_at),
        "planned_rate": LATENCY_RATE,
        "planned_events": measured_events,
        "achieved_rate": measured_events / max(last_sent - measured_from, 1e-9),
        "seconds": seconds,
        "window_s": window,
        "clicks": len(clicks),
        "click_latency_ms": {
            "p50": float(np.percentile(latencies_ms, 50)),
            "p90": float(np.percentile(latencies_ms, 90)),
            "p99": float(np.percentile(latencies_ms, 99)),
            "max": float(latencies_ms.max()),
            "min": float(latencies_ms.min()),
        },
        "send_lag_ms": {
            "p50": float(np.percentile(lags_ms, 50)),
            "p99": float(np.percentile(lags_ms, 99)),
            "max": float(lags_ms.max()),
        },
        "started_at_s": started_at - service.started,
        "consumer_metrics": metrics,
        **batch_means(metrics),
        "cpu_share_in_window": cpu_shares(cpu_at_start, cpu_at_end, window),
        "errors": errors,
    }


def _latency_run(stack: LocalStack, home: Path, seconds: float) -> dict[str, Any]:
    env, experiment_id = _prepare(stack, LATENCY_WINDOW)
    server_pids = {server.name: server.pid for server in stack.embedded}
    log_path = home / f"reward-{experiment_id}.log"
    return {
        "experiment_id": experiment_id,
        **run_loop(lambda: _measure_latency(env, experiment_id, seconds, log_path, server_pids)),
    }


@benchmark("reward")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """Input events/s joined by one reward service, vs bare Kafka fetch; click-to-reward p99."""
    events = options.repeats(200_000, 60_000)
    runs_count = options.repeats(RUNS, 1)
    latency_seconds = float(options.repeats(20, 8))
    runs: list[dict[str, Any]] = []
    with temporary_stack(lambda stack: _reward_env(stack, "migrate")) as (stack, home):
        for number in range(runs_count):
            runs.append(_throughput_run(stack, home, events, number))
        latency = _latency_run(stack, home, latency_seconds)

    # The rates go into the message for diagnosis only: a wrong answer reports no figures.
    wrong = [
        f"run {n} ({r['events_per_s']:,.0f} events/s): {'; '.join(r['errors'])}"
        for n, r in enumerate(runs)
        if r["errors"]
    ]
    if latency["errors"]:
        p99 = latency["click_latency_ms"]["p99"]
        wrong.append(f"latency (p99 {p99:,.0f} ms): {'; '.join(latency['errors'])}")
    if wrong:
        raise RewardBenchFailed(" | ".join(wrong))

    events_per_s = median(runs, "events_per_s")
    click_ms = latency["click_latency_ms"]
    figures: Figures = {
        "baseline_reward_kafka_consume_per_s": median(runs, "baseline_kafka_consume_per_s"),
        "reward_join_events_per_s": events_per_s,
        "reward_join_event_us": 1e6 / events_per_s,
        "reward_join_cpu_per_event_us": median(runs, "service_cpu_us_per_event"),
        "reward_output_messages_per_s": median(runs, "output_messages_per_s"),
        "reward_join_events_per_s_from_ready": median(runs, "events_per_s_from_ready"),
        "reward_start_s": median(runs, "start_s"),
        "reward_first_commit_s": median(runs, "first_commit_s"),
        "reward_end_to_end_s": median(runs, "end_to_end_s"),
        "reward_click_latency_p50_ms": click_ms["p50"],
        "reward_click_latency_p90_ms": click_ms["p90"],
        "reward_click_latency_p99_ms": click_ms["p99"],
        "reward_click_latency_max_ms": click_ms["max"],
        "reward_latency_clicks": float(latency["clicks"]),
        "reward_latency_input_per_s": latency["achieved_rate"],
    }
    details: Details = {
        "config": {
            "input_events": events,
            "runs": runs_count,
            "input_partitions": INPUT_PARTITIONS,
            "slate_size": SLATE_SIZE,
            "click_rate": CLICK_RATE,
            "catalogue": f"item ids 1..{N_ITEMS}",
            "variants": [name for name, _ in VARIANTS],
            "stream_window_s": STREAM_WINDOW.total_seconds(),
            "stream_spacing_ms": STREAM_SPACING.total_seconds() * 1_000,
            "idle_after_s": IDLE_AFTER_SECONDS,
            "fetch_max_records": FETCH_MAX_RECORDS,
            "poll_seconds": POLL_SECONDS,
            "latency_rate": LATENCY_RATE,
            "latency_seconds": latency_seconds,
            "latency_warmup_s": LATENCY_WARMUP_SECONDS,
            "latency_window_s": LATENCY_WINDOW.total_seconds(),
            "click_delay_s": list(CLICK_DELAY_SECONDS),
            "seed": SEED,
        },
        "runs": runs,
        "latency": latency,
        "batch_records_mean": median(runs, "batch_records_mean"),
        "batch_ms_mean": median(runs, "batch_ms_mean"),
        "records_per_processing_s": median(runs, "records_per_processing_s"),
    }
    add_ratio(figures, details, "reward_join_events_per_s", "baseline_reward_kafka_consume_per_s")
    add_target(
        details, figures, "reward_join_event_us", 1e6 / TARGET_EVENTS_PER_S, _THROUGHPUT_SPEC
    )
    add_target(details, figures, "reward_click_latency_p99_ms", TARGET_P99_MS, _LATENCY_SPEC)
    return figures, details
