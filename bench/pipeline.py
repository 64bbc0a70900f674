"""Events per second through the whole pipeline: serve, click, reward, learner, end to end.

The platform runs as ``cineamate run`` starts it (``bench/_platform.py``). An
experiment of Thompson Sampling, epsilon-greedy and UCB1 against a random
control over the synthetic MovieLens catalogue (3,883 movies, a 2 s reward
window) is driven by ``cineamate loadgen`` in a process of its own: open-loop
recommendations from the synthetic users, and the clicks its planted truth
draws, posted to ``POST /api/events/clicks``. Every served item gets exactly
one outcome (1 when clicked, else 0 when its window closes) and the learner
adds each to its variant's pulls, so the pipeline has carried everything when
the variants' pulls add up to the items served. The benchmark polls them.

``pipeline_events_per_s`` is (serves + clicks) / (time from the first planned
request to the poll that sees every outcome applied, less the reward window,
which is waiting, not work). Its same-run baseline is
``baseline_kafka_produce_per_s``: a bare aiokafka producer sending the same
number of serve-sized messages to the same broker, acknowledged. The same
producer then times 300 acknowledged sends one after the other:
``baseline_kafka_produce_p99_ms``, the floor of any latency through a topic.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiokafka import AIOKafkaProducer

from bench._platform import (
    Platform,
    PlatformFailed,
    create_running_experiment,
    make_home,
    start_platform,
    stop_platform,
)
from bench._registry import Details, Figures, RunOptions, add_ratio, benchmark
from cineamate.offline.movielens import ensure_synthetic, open_dataset
from cineamate.stack.demo import SYNTHETIC_DATASET, bandit_experiment

CACHE = Path(tempfile.gettempdir()) / "cineamate-bench-pipeline"
RATE, RATE_QUICK = 1_000.0, 300.0
SECONDS, SECONDS_QUICK = 20.0, 5.0
REWARD_WINDOW_SECONDS = 2.0
DRAIN_TIMEOUT_SECONDS = 120.0
VARIANTS = ("thompson", "egreedy", "ucb1", "control")
_SERVE_SIZED = b"x" * 700
_SEQUENTIAL_SENDS = 300


def synthetic_catalogue() -> tuple[Path, list[int]]:
    """The synthetic set's columnar file (made once) and its movie ids."""
    path = ensure_synthetic(CACHE / SYNTHETIC_DATASET)
    return path, open_dataset(path).movies.movie_ids.astype(int).tolist()


def drive(
    platform: Platform,
    experiment_id: str,
    data: Path,
    rate: float,
    seconds: float,
    out: Path,
    target: str = "gateway",
) -> dict[str, Any]:
    """``cineamate loadgen`` in its own process against ``target``; its JSON report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEAMATE_")}
    env["CINEAMATE_CLIENT_KEY"] = platform.client_key
    command = [
        *(sys.executable, "-m", "cineamate.cli", "loadgen", "--no-progress"),
        *("--url", platform.url(target), "--experiment", experiment_id),
        *("--rate", f"{rate:g}", "--duration", f"{seconds:g}", "--data", str(data)),
        *("--connections", "64", "--json", str(out)),
    ]
    answer = subprocess.run(command, env=env, capture_output=True, timeout=seconds + 120)
    if answer.returncode != 0:
        raise PlatformFailed(f"cineamate loadgen failed: {answer.stderr.decode()[-2_000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def total_pulls(platform: Platform, experiment_id: str) -> float:
    """The outcomes the learner has applied, over every variant."""
    headers = {"Authorization": f"Bearer {platform.admin_token}"}
    total = 0.0
    with httpx.Client(base_url=platform.url("gateway"), headers=headers, timeout=10) as client:
        for variant in VARIANTS:
            path = f"/api/experiments/{experiment_id}/policies/{variant}/state"
            answer = client.get(path, params={"limit": 1})
            if answer.status_code == 200:
                total += answer.json()["total_pulls"]
    return total


async def _produce(bootstrap: str, topic: str, messages: int) -> tuple[float, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        await producer.send_and_wait(topic, _SERVE_SIZED)
        started = time.perf_counter()
        for _ in range(messages):
            await producer.send(topic, _SERVE_SIZED)
        await producer.flush()
        rate = messages / (time.perf_counter() - started)
        latencies = []
        for _ in range(_SEQUENTIAL_SENDS):
            sent = time.perf_counter()
            await producer.send_and_wait(topic, _SERVE_SIZED)
            latencies.append(time.perf_counter() - sent)
        return rate, 1_000 * float(np.percentile(latencies, 99))
    finally:
        await producer.stop()


def baseline_produce(platform: Platform, messages: int) -> tuple[float, float]:
    """Bare aiokafka on the platform's broker: serve-sized records acknowledged per second
    when ``messages`` are sent at once, and the p99 (ms) of one acknowledged send alone."""
    stores = json.loads((platform.home / "run.json").read_text())["stores"]
    return asyncio.run(_produce(stores["KAFKA_BOOTSTRAP_SERVERS"], "bench-baseline", messages))


@benchmark("pipeline")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """Serve -> click -> reward -> learner events/s end to end, vs bare aiokafka produce."""
    rate = RATE_QUICK if options.quick else RATE
    seconds = SECONDS_QUICK if options.quick else SECONDS
    data, item_ids = synthetic_catalogue()
    home = make_home("pipeline")
    platform: Platform | None = None
    try:
        platform = start_platform(home)
        experiment_id = create_running_experiment(
            platform, bandit_experiment("pipeline benchmark", item_ids, REWARD_WINDOW_SECONDS)
        )
        time.sleep(2.0)  # every assignment instance sees the new experiment
        started = time.perf_counter()
        report = drive(platform, experiment_id, data, rate, seconds, home / "loadgen.json")
        driven = time.perf_counter()
        impressions = sum(v["impressions"] for v in report["variants"].values())
        deadline = driven + DRAIN_TIMEOUT_SECONDS
        applied = 0.0
        while applied < impressions and time.perf_counter() < deadline:
            time.sleep(0.1)
            applied = total_pulls(platform, experiment_id)
        finished = time.perf_counter()
        if applied != impressions:
            raise PlatformFailed(f"the learner applied {applied:g} outcomes of {impressions}")
        serves = sum(v["serves"] for v in report["variants"].values())
        clicks = report["clicks_sent"]
        produce_rate, produce_p99_ms = baseline_produce(platform, serves + clicks)
    finally:
        leftovers = stop_platform(platform) if platform is not None else []
        shutil.rmtree(home, ignore_errors=True)
    busy = finished - started - REWARD_WINDOW_SECONDS
    figures: Figures = {
        "pipeline_events_per_s": (serves + clicks) / busy,
        "pipeline_drain_s": finished - driven,
        "pipeline_serves_count": float(serves),
        "pipeline_clicks_count": float(clicks),
        "baseline_kafka_produce_per_s": produce_rate,
        "baseline_kafka_produce_p99_ms": produce_p99_ms,
    }
    details: Details = {
        "config": {
            "rate_per_s": rate,
            "seconds": seconds,
            "reward_window_seconds": REWARD_WINDOW_SECONDS,
            "variants": list(VARIANTS),
            "catalogue_items": len(item_ids),
        },
        "outcomes_applied": applied,
        "loadgen": report,
        "leftover_processes": leftovers,
    }
    add_ratio(figures, details, "pipeline_events_per_s", "baseline_kafka_produce_per_s")
    if report["load"]["failed"] or report["clicks_failed"]:
        raise PlatformFailed(f"requests failed: {report['load']['errors_by_status']}")
    return figures, details
