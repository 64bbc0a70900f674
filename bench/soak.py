"""Soak: 10 minutes at 1,000 recommendations/s with clicks; memory and consumer lag must hold.

The platform runs as ``cineamate run`` starts it (``bench/_platform.py``) with
the experiment of ``bench/pipeline.py`` (three bandits and a random control,
synthetic MovieLens catalogue, 10 s reward window), driven by ``cineamate
loadgen`` in its own process, straight to the assignment service's port (on a
small machine the public entry saturates first, see ``bench/recommendations.py``).
Every 5 s the benchmark samples the resident memory of every platform process
and the lag of every consumer group (end offsets of its input topics less its
committed offsets). The first 20% of the
run is warm-up. After it, a service's memory should grow by less than 10%
(``soak_rss_growth_max``), and consumer lag should not grow: the median lag of
the last third of the samples less that of the first third
(``soak_lag_growth_max_count``) should stay within one fetch batch (2,000).
Only ``python -m bench soak`` runs it; it writes ``bench/results/soak.json``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from typing import Any

import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench._platform import (
    Platform,
    create_running_experiment,
    make_home,
    start_platform,
    stop_platform,
)
from bench._registry import Details, Figures, RunOptions, add_target, benchmark
from bench._services import CommittedOffsets
from bench.pipeline import drive, synthetic_catalogue
from cineamate.stack.demo import bandit_experiment

RATE = 1_000.0
SECONDS, SECONDS_QUICK = 600.0, 90.0
WARMUP_SHARE = 0.2
SAMPLE_SECONDS = 5.0
REWARD_WINDOW_SECONDS = 10.0
RSS_GROWTH_LIMIT = 0.10
LAG_GROWTH_LIMIT = 2_000
# Consumer group -> the topics it reads (the services' defaults).
GROUPS = {
    "reward": ("serves", "clicks"),
    "policy": ("rewards",),
    "analytics": ("serves", "clicks", "rewards", "late-clicks", "state-updates"),
}
_SPEC = "issue 10 soak: resident memory grows < 10% after warm-up; consumer lag does not grow"


def _services(platform: Platform) -> dict[str, psutil.Process]:
    found = {}
    for child in psutil.Process(platform.process.pid).children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.Error:
            continue
        if "serve" in command and command.index("serve") + 1 < len(command):
            found[command[command.index("serve") + 1]] = child
    return found


class _LagProbe:
    """End offsets less committed offsets, per consumer group."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._groups: dict[str, tuple[CommittedOffsets, list[TopicPartition]]] = {}

    async def start(self) -> None:
        await self._consumer.start()
        for group, topics in GROUPS.items():
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(self._consumer.partitions_for_topic(topic) or ())
            ]
            offsets = CommittedOffsets(self._bootstrap, group, partitions)
            await offsets.start()
            self._groups[group] = (offsets, partitions)

    async def lags(self) -> dict[str, int]:
        lags = {}
        for group, (offsets, partitions) in self._groups.items():
            # Committed first: an end offset read after it is never behind it.
            committed = await offsets.committed()
            ends = await self._consumer.end_offsets(partitions)
            lags[group] = int(sum(ends.values()) - committed)
        return lags

    async def stop(self) -> None:
        for offsets, _ in self._groups.values():
            await offsets.stop()
        await self._consumer.stop()


def _sample(platform: Platform, seconds: float, samples: list[dict[str, Any]]) -> None:
    stores = json.loads((platform.home / "run.json").read_text())["stores"]

    async def loop() -> None:
        probe = _LagProbe(stores["KAFKA_BOOTSTRAP_SERVERS"])
        await probe.start()
        try:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                rss = {}
                for name, process in _services(platform).items():
                    try:
                        rss[name] = process.memory_info().rss
                    except psutil.Error:
                        continue
                samples.append(
                    {"t": time.monotonic() - started, "rss": rss, "lag": await probe.lags()}
                )
                await asyncio.sleep(SAMPLE_SECONDS)
        finally:
            await probe.stop()

    asyncio.run(loop())


def _figures(samples: list[dict[str, Any]], seconds: float) -> Figures:
    after = [s for s in samples if s["t"] >= WARMUP_SHARE * seconds]
    figures: Figures = {}
    for name in after[0]["rss"]:
        series = [s["rss"][name] for s in after if name in s["rss"]]
        figures[f"soak_rss_growth_{name}"] = series[-1] / series[0] - 1
    figures["soak_rss_growth_max"] = max(figures.values())
    third = max(1, len(after) // 3)
    for group in GROUPS:
        lags = [s["lag"][group] for s in after]
        growth = float(np.median(lags[-third:]) - np.median(lags[:third]))
        figures[f"soak_lag_growth_{group}_count"] = growth
        figures[f"soak_lag_max_{group}_count"] = float(max(lags))
    figures["soak_lag_growth_max_count"] = max(
        figures[f"soak_lag_growth_{group}_count"] for group in GROUPS
    )
    return figures


@benchmark("soak", explicit=True)
def run(options: RunOptions) -> tuple[Figures, Details]:
    """10 minutes at 1,000 recommendations/s with clicks: memory and consumer lag hold."""
    seconds = SECONDS_QUICK if options.quick else SECONDS
    data, item_ids = synthetic_catalogue()
    home = make_home("soak")
    platform: Platform | None = None
    samples: list[dict[str, Any]] = []
    try:
        platform = start_platform(home)
        experiment_id = create_running_experiment(
            platform, bandit_experiment("soak", item_ids, REWARD_WINDOW_SECONDS)
        )
        time.sleep(2.0)
        sampler = threading.Thread(target=_sample, args=(platform, seconds, samples))
        sampler.start()
        report = drive(
            platform, experiment_id, data, RATE, seconds, home / "loadgen.json", "assignment"
        )
        sampler.join()
    finally:
        leftovers = stop_platform(platform) if platform is not None else []
        shutil.rmtree(home, ignore_errors=True)
    figures = _figures(samples, seconds)
    load = report["load"]
    figures |= {
        "soak_rec_achieved_per_s": load["achieved_rate_per_s"],
        "soak_rec_p99_ms": load["latency_all_ms"]["p99_ms"],
        "soak_rec_failed_count": float(load["failed"]),
        "soak_clicks_count": float(report["clicks_sent"]),
    }
    details: Details = {
        "config": {
            "rate_per_s": RATE,
            "seconds": seconds,
            "warmup_share": WARMUP_SHARE,
            "sample_seconds": SAMPLE_SECONDS,
            "reward_window_seconds": REWARD_WINDOW_SECONDS,
            "groups": {group: list(topics) for group, topics in GROUPS.items()},
        },
        "samples": samples,
        "loadgen": report,
        "leftover_processes": leftovers,
    }
    add_target(details, figures, "soak_rss_growth_max", RSS_GROWTH_LIMIT, _SPEC)
    add_target(details, figures, "soak_lag_growth_max_count", LAG_GROWTH_LIMIT, _SPEC)
    return figures, details
