"""Reward throughput of the learner: one policy service process, the real broker and Redis.

Each run pre-produces the rewards into a fresh ``rewards`` topic (6 partitions)
for a fresh experiment, then starts ``cineamate serve policy`` as its own
process and polls ``total_pulls`` of every variant until all rewards are
applied. The rate counts the rewards applied between the first poll that sees
any and the poll that sees them all, so neither the process start nor the
consumer-group join (about 5 s on Tansu) is in it; both are reported apart.

The same-run baselines bound what the learner can reach on these servers: a
bare aiokafka consumer fetching the same messages with ``getmany``, and
pipelined EVALSHA calls of a two-HINCRBY script on the same Redis. A run
counts only if every arm's pulls and successes come out exact.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
from aiokafka import TopicPartition
from redis.asyncio import Redis

from bench._registry import Details, Figures, RunOptions, add_ratio, add_target, benchmark
from bench._services import (
    FETCH_MAX_RECORDS,
    N_ITEMS,
    POLL_SECONDS,
    ServiceBenchFailed,
    ServiceProcess,
    batch_means,
    consumer_metrics,
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
from cineamate.common.events import RewardedItem, RewardEvent
from cineamate.common.kafka import OutgoingMessage
from cineamate.stack.local import LocalStack

# (variant, policy type); the last one is the control.
VARIANTS = (("ts", "thompson"), ("eg", "egreedy"), ("control", "random"))
CLICK_RATE = 0.05
REWARD_PARTITIONS = 6
RUNS = 3
SEED = 1_000_211
EVALSHA_PIPELINE = 100
TARGET_REWARDS_PER_S = 20_000.0
_TARGET_SPEC = "spec: the learner applies at least 20,000 rewards/s (<= 50 us per reward)"
_EVALSHA_SCRIPT = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

IntArray = npt.NDArray[np.int64]
T = TypeVar("T")


class LearnerFailed(ServiceBenchFailed):
    """The learner did not apply exactly the rewards it was given."""


@dataclass(frozen=True)
class _Rewards:
    """The rewards of one run and the per-arm counts they must produce."""

    events: list[RewardEvent]
    arm_to_pulls: dict[str, IntArray]
    arm_to_successes: dict[str, IntArray]


def _make_rewards(experiment_id: str, count: int, seed: int) -> _Rewards:
    """Zipf-popular items (p ~ 1/rank), ~5% ones, even traffic, distinct serves, the last hour."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1)
    ranked_ids = rng.permutation(np.arange(1, N_ITEMS + 1))
    items = rng.choice(ranked_ids, size=count, p=popularity / popularity.sum())
    clicks = rng.random(count) < CLICK_RATE
    variant_of = rng.integers(0, len(VARIANTS), count)
    positions = rng.integers(0, 10, count)
    now = datetime.now(UTC)
    step = 3600.0 / count
    events = [
        RewardEvent(
            serve_id=f"s{seed}-{index}",
            experiment_id=experiment_id,
            variant=VARIANTS[variant_of[index]][0],
            policy_type=VARIANTS[variant_of[index]][1],
            items=[
                RewardedItem(
                    item_id=int(items[index]),
                    position=int(positions[index]),
                    propensity=0.1,
                    reward=float(clicks[index]),
                )
            ],
            served_at=now - timedelta(seconds=(count - index) * step + 600),
            rewarded_at=now - timedelta(seconds=(count - index) * step),
        )
        for index in range(count)
    ]
    arm_to_pulls = {}
    arm_to_successes = {}
    for number, (variant, _) in enumerate(VARIANTS):
        chosen = variant_of == number
        arm_to_pulls[variant] = np.bincount(items[chosen] - 1, minlength=N_ITEMS)
        arm_to_successes[variant] = np.bincount(
            items[chosen & clicks] - 1, minlength=N_ITEMS
        ).astype(np.int64)
    return _Rewards(events, arm_to_pulls, arm_to_successes)


def _service_env(stack: LocalStack, tag: str) -> dict[str, str]:
    """The policy service's environment: the run's topics and group, free ports."""
    env = service_env(stack, tag)
    env["CINEAMATE_REWARDS_PARTITIONS"] = str(REWARD_PARTITIONS)
    env["CINEAMATE_POLICY_CONSUMER_GROUP"] = f"policy-{tag}"
    return env


async def _evalsha_rate(redis_url: str, calls: int, tag: str) -> dict[str, Any]:
    """Baseline: EVALSHA of a two-HINCRBY script, pipelined by 100."""
    client = Redis.from_url(redis_url)
    key = f"bench:evalsha:{tag}"
    try:
        sha = await client.script_load(_EVALSHA_SCRIPT)
        rng = np.random.default_rng(SEED)
        items = rng.integers(1, N_ITEMS + 1, calls).tolist()
        clicks = (rng.random(calls) < CLICK_RATE).astype(int).tolist()
        started = time.perf_counter()
        for first in range(0, calls, EVALSHA_PIPELINE):
            pipe = client.pipeline(transaction=False)
            for item, click in zip(
                items[first : first + EVALSHA_PIPELINE],
                clicks[first : first + EVALSHA_PIPELINE],
                strict=True,
            ):
                pipe.evalsha(sha, 1, key, f"p:{item}", f"s:{item}", click)
            await pipe.execute()
        seconds = time.perf_counter() - started
        await client.delete(key)
    finally:
        await client.aclose()
    return {"calls": calls, "seconds": seconds, "per_s": calls / seconds}


class _Service(ServiceProcess):
    """One policy service process, polled over HTTP."""

    failure = LearnerFailed

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__("policy", env, log_path)
        self.http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=5)

    def stop(self) -> None:
        self.http.close()
        self.stop_process()

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def state(self, experiment_id: str, variant: str, *, arms: bool = False) -> dict[str, Any]:
        params = {} if arms else {"limit": 1}
        path = f"/api/experiments/{experiment_id}/policies/{variant}/state"
        answer = self.http.get(path, params=params)
        if answer.status_code != 200:
            raise LearnerFailed(f"GET {path} answered {answer.status_code}: {answer.text[:500]}")
        result: dict[str, Any] = answer.json()
        return result

    def total_pulls(self, experiment_id: str) -> float:
        return float(sum(self.state(experiment_id, v)["total_pulls"] for v, _ in VARIANTS))

    def metrics(self, group: str) -> dict[str, float]:
        """The consumer's batch histograms and failure counters for ``group``."""
        text = self.http.get("/metrics").text
        return consumer_metrics(text, group, {"cineamate_dead_letters_total": "dead_letters"})


def _wait(what: str, deadline: float, service: _Service, until: Callable[[], T | None]) -> T:
    while time.perf_counter() < deadline:
        service.check_alive()
        answer = until()
        if answer is not None:
            return answer
        time.sleep(POLL_SECONDS)
    raise LearnerFailed(f"timed out waiting for {what}; the service logged: {service.log_tail()}")


def _measure_service(
    env: dict[str, str],
    experiment_id: str,
    rewards: _Rewards,
    log_path: Path,
    server_pids: dict[str, int | None],
) -> dict[str, Any]:
    """Start the service on pre-produced rewards and time how fast they are applied."""
    expected = len(rewards.events)
    service = _Service(env, log_path)
    try:
        deadline = service.started + 60 + expected / 2_000
        _wait("/readyz", deadline, service, lambda: True if service.ready() else None)
        ready = time.perf_counter()

        def pulls_so_far() -> float | None:
            total = service.total_pulls(experiment_id)
            return total if total > 0 else None

        first_pulls = _wait("the first reward", deadline, service, pulls_so_far)
        first = time.perf_counter()
        pids = {"service": service.process.pid, **server_pids, "bench": os.getpid()}
        cpu_at_first = cpu_seconds(pids)
        polls = 0

        def all_applied() -> float | None:
            nonlocal polls
            polls += 1
            total = service.total_pulls(experiment_id)
            return total if total >= expected else None

        final_pulls = _wait("every reward", deadline, service, all_applied)
        done = time.perf_counter()
        cpu_at_done = cpu_seconds(pids)
        # A double count could land after the total first reached the expected figure.
        time.sleep(1.0)
        errors = _check_counts(service, experiment_id, rewards, final_pulls)
        metrics = service.metrics(env["CINEAMATE_POLICY_CONSUMER_GROUP"])
        if metrics["dead_letters"] or metrics["batch_failures"]:
            errors.append(
                f"{metrics['dead_letters']:g} dead letters and {metrics['batch_failures']:g} "
                "failed batches, expected none"
            )
    finally:
        service.stop()
    window = done - first
    return {
        "start_s": ready - service.started,
        "first_reward_s": first - service.started,
        "end_to_end_s": done - service.started,
        "window_s": window,
        "pulls_at_first_poll": first_pulls,
        "polls_in_window": polls,
        "rewards_per_s": (expected - first_pulls) / window,
        "rewards_per_s_from_ready": expected / (done - ready),
        "consumer_metrics": metrics,
        **batch_means(metrics),
        "cpu_share_in_window": cpu_shares(cpu_at_first, cpu_at_done, window),
        "errors": errors,
    }


def _check_counts(
    service: _Service, experiment_id: str, rewards: _Rewards, total_seen: float
) -> list[str]:
    """Every arm's pulls and successes against the truth; a list of what is wrong."""
    expected = len(rewards.events)
    errors = []
    total = service.total_pulls(experiment_id)
    if total_seen != expected or total != expected:
        errors.append(f"total_pulls {total_seen:g} then {total:g}, expected {expected}")
    for variant, _ in VARIANTS:
        arms = service.state(experiment_id, variant, arms=True)["arms"]
        pulls = np.array([arm["pulls"] for arm in arms])
        successes = np.array([arm["successes"] for arm in arms])
        wrong_pulls = int(np.count_nonzero(pulls != rewards.arm_to_pulls[variant]))
        wrong_successes = int(np.count_nonzero(successes != rewards.arm_to_successes[variant]))
        if wrong_pulls or wrong_successes:
            errors.append(
                f"variant {variant}: {wrong_pulls} arms with wrong pulls, "
                f"{wrong_successes} with wrong successes"
            )
    return errors


def _one_run(
    stack: LocalStack, home: Path, count: int, evalsha_calls: int, number: int
) -> dict[str, Any]:
    """Fresh topics and experiment, rewards produced, both baselines, then the service."""
    tag = uuid.uuid4().hex[:8]
    env = _service_env(stack, tag)
    experiment_id = f"bench-{tag}"
    start_experiment(env, experiment_id, "learner benchmark", VARIANTS)
    rewards = _make_rewards(experiment_id, count, SEED + number)
    topic = env["CINEAMATE_REWARDS_TOPIC"]
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    started = time.perf_counter()
    run_loop(
        lambda: produce(
            bootstrap, (OutgoingMessage.of(topic, e) for e in rewards.events), "bench-learner"
        )
    )
    produce_s = time.perf_counter() - started
    partitions = [TopicPartition(topic, p) for p in range(REWARD_PARTITIONS)]
    kafka = run_loop(lambda: fetch_all(bootstrap, partitions, count))
    redis = run_loop(lambda: _evalsha_rate(env["REDIS_URL"], evalsha_calls, tag))
    server_pids = {server.name: server.pid for server in stack.embedded}
    learner = _measure_service(env, experiment_id, rewards, home / f"policy-{tag}.log", server_pids)
    return {
        "experiment_id": experiment_id,
        "produce_per_s": count / produce_s,
        "baseline_kafka": kafka,
        "baseline_redis": redis,
        **learner,
    }


@benchmark("learner")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """Rewards/s applied by one policy service process, vs bare Kafka fetch and Redis EVALSHA."""
    count = options.repeats(200_000, 40_000)
    evalsha_calls = options.repeats(100_000, 20_000)
    runs: list[dict[str, Any]] = []
    with temporary_stack(lambda stack: _service_env(stack, "migrate")) as (stack, home):
        for number in range(RUNS):
            runs.append(_one_run(stack, home, count, evalsha_calls, number))

    wrong = [f"run {n}: {'; '.join(r['errors'])}" for n, r in enumerate(runs) if r["errors"]]
    if wrong:
        raise LearnerFailed(" | ".join(wrong))

    kafka_per_s = float(np.median([r["baseline_kafka"]["per_s"] for r in runs]))
    evalsha_per_s = float(np.median([r["baseline_redis"]["per_s"] for r in runs]))
    learner_per_s = median(runs, "rewards_per_s")
    figures: Figures = {
        "baseline_kafka_consume_per_s": kafka_per_s,
        "baseline_redis_evalsha_per_s": evalsha_per_s,
        "baseline_redis_evalsha_us": 1e6 / evalsha_per_s,
        "learner_rewards_per_s": learner_per_s,
        "learner_reward_us": 1e6 / learner_per_s,
        "learner_rewards_per_s_from_ready": median(runs, "rewards_per_s_from_ready"),
        "learner_start_s": median(runs, "start_s"),
        "learner_first_reward_s": median(runs, "first_reward_s"),
        "learner_end_to_end_s": median(runs, "end_to_end_s"),
    }
    details: Details = {
        "config": {
            "rewards": count,
            "runs": RUNS,
            "n_items": N_ITEMS,
            "variants": [name for name, _ in VARIANTS],
            "click_rate": CLICK_RATE,
            "reward_partitions": REWARD_PARTITIONS,
            "item_popularity": "Zipf, p ~ 1/rank over a random permutation of ids 1..3706",
            "poll_seconds": POLL_SECONDS,
            "fetch_max_records": FETCH_MAX_RECORDS,
            "evalsha_calls": evalsha_calls,
            "evalsha_pipeline": EVALSHA_PIPELINE,
            "seed": SEED,
        },
        "runs": runs,
        "batch_records_mean": median(runs, "batch_records_mean"),
        "batch_ms_mean": median(runs, "batch_ms_mean"),
        "records_per_processing_s": median(runs, "records_per_processing_s"),
    }
    add_ratio(figures, details, "learner_rewards_per_s", "baseline_kafka_consume_per_s")
    add_ratio(figures, details, "learner_reward_us", "baseline_redis_evalsha_us")
    add_target(details, figures, "learner_reward_us", 1e6 / TARGET_REWARDS_PER_S, _TARGET_SPEC)
    return figures, details
