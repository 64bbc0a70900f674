"""The demo ``cineamate run`` starts once the platform is ready: policies learning live.

On the embedded default (or with ``CINEAMATE_DEMO=1``) it makes sure the
synthetic MovieLens 1M exists under ``$CINEAMATE_HOME/datasets/`` (generated
on the first start, a few seconds, then reused), loads its movies into the
catalogue ``movielens`` unless that catalogue already holds items, creates
(or finds, on a later start) a running experiment of Thompson Sampling,
epsilon-greedy and UCB1 against a random control with a 10 s reward window,
and drives it with the load generator at ``CINEAMATE_DEMO_RATE`` requests/s,
users and clicks from the set's planted truth. Every minute it prints what was
served and clicked per variant. Nothing here runs before the platform says
it is ready, so the demo never delays it; a demo that fails says why and
leaves the platform running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cineamate.common.errors import CineamateError, DependencyUnavailable
from cineamate.loadgen import ClickModel, LiveConfig, LiveReport, Population, run_live
from cineamate.offline.movielens import SYNTHETIC_COLUMNAR_NAME, ensure_synthetic, open_dataset
from cineamate.offline.movielens.load import DEFAULT_CATALOGUE, catalogue_size, load_catalogue

__all__ = [
    "DEMO_EXPERIMENT_NAME",
    "DEMO_REWARD_WINDOW_SECONDS",
    "SYNTHETIC_DATASET",
    "DemoPlan",
    "bandit_experiment",
    "demo_experiment_body",
    "run_demo",
]

SYNTHETIC_DATASET = "synthetic-ml-1m"
DEMO_EXPERIMENT_NAME = "CineaMate demo"
# Short, so that clicks become rewards (and posteriors move) within seconds.
DEMO_REWARD_WINDOW_SECONDS = 10.0
_ROUND_SECONDS = 60.0
_CONNECTIONS = 4


def bandit_experiment(
    name: str, catalogue: str | list[int], reward_window_seconds: float
) -> dict[str, Any]:
    """Thompson, epsilon-greedy and UCB1 against a random control, all users in."""
    return {
        "name": name,
        "catalogue": catalogue,
        "policies": [
            {"name": "thompson", "type": "thompson"},
            {"name": "egreedy", "type": "egreedy"},
            {"name": "ucb1", "type": "ucb1"},
            {"name": "control", "type": "random", "control": True},
        ],
        "traffic": 1.0,
        "reward_window_hours": reward_window_seconds / 3600,
    }


def demo_experiment_body() -> dict[str, Any]:
    """The demo experiment: the three bandits and the control over ``movielens``."""
    return bandit_experiment(DEMO_EXPERIMENT_NAME, DEFAULT_CATALOGUE, DEMO_REWARD_WINDOW_SECONDS)


@dataclass(frozen=True)
class DemoPlan:
    """Where the demo finds the platform, its files and its tokens, and how fast it goes.

    >>> plan = DemoPlan(Path(".cineamate"), 8000, database_url, admin, client, rate=5.0)
    >>> await run_demo(plan, print)  # doctest: +SKIP
    """

    home: Path
    entry_port: int
    database_url: str
    admin_token: str | None
    client_key: str | None
    rate: float

    @property
    def entry(self) -> str:
        return f"http://127.0.0.1:{self.entry_port}"

    @property
    def dataset(self) -> Path:
        return self.home / "datasets" / SYNTHETIC_DATASET


async def run_demo(plan: DemoPlan, say: Callable[[str], None]) -> None:
    """Prepare the demo and drive it until cancelled; a failure is said, not raised."""
    try:
        await _run(plan, say)
    except (CineamateError, httpx.HTTPError, OSError, ValueError) as exc:
        say(f"demo stopped: {exc}")


async def _run(plan: DemoPlan, say: Callable[[str], None]) -> None:
    started = time.monotonic()
    if not (plan.dataset / SYNTHETIC_COLUMNAR_NAME).is_file():
        say(f"generating the synthetic MovieLens 1M into {plan.dataset} (first start only)")
    path = await asyncio.to_thread(ensure_synthetic, plan.dataset)
    data = await asyncio.to_thread(open_dataset, path)
    if await catalogue_size(plan.database_url) == 0:
        movies = await load_catalogue(data, plan.database_url)
        say(f"catalogue {DEFAULT_CATALOGUE!r}: {movies:,} synthetic movies loaded")
    experiment_id = await _demo_experiment(plan)
    population = Population.from_movielens(data)
    model = ClickModel.from_movielens(data)
    say(
        f"experiment {experiment_id} ({DEMO_EXPERIMENT_NAME!r}: thompson, egreedy, ucb1 vs a "
        f"random control) driven at {plan.rate:g} requests/s, {len(population):,} users, "
        f"clicks from the planted truth; ready {time.monotonic() - started:.1f} s after the "
        "platform. CINEAMATE_DEMO=0 (make run DEMO=0) turns the demo off"
    )
    round_number = 0
    while True:
        config = LiveConfig(
            port=plan.entry_port,
            experiment_id=experiment_id,
            rate=plan.rate,
            duration=_ROUND_SECONDS,
            client_key=plan.client_key,
            connections=_CONNECTIONS,
            seed=round_number,
        )
        report = await run_live(config, population, model)
        say(_round_line(report))
        round_number += 1


async def _demo_experiment(plan: DemoPlan) -> str:
    """The running demo experiment of an earlier start, else a new one, started."""
    headers = {"Authorization": f"Bearer {plan.admin_token}"} if plan.admin_token else {}
    headers["x-cineamate-actor"] = "demo"
    async with httpx.AsyncClient(base_url=plan.entry, headers=headers, timeout=30) as client:
        running = await client.get("/api/experiments", params={"status": "running"})
        _check(running, "list experiments")
        for experiment in running.json():
            if experiment["name"] == DEMO_EXPERIMENT_NAME:
                return str(experiment["id"])
        created = await client.post("/api/experiments", json=demo_experiment_body())
        _check(created, "create the demo experiment")
        experiment_id = str(created.json()["id"])
        started = await client.patch(
            f"/api/experiments/{experiment_id}", json={"status": "running"}
        )
        _check(started, "start the demo experiment")
    return experiment_id


def _check(answer: httpx.Response, what: str) -> None:
    if answer.status_code >= 300:
        raise DependencyUnavailable(f"could not {what}: {answer.status_code} {answer.text[:200]}")


def _round_line(report: LiveReport) -> str:
    load = report.load
    variants = "; ".join(
        f"{name} CTR {tally.ctr:.3f} (planted {tally.planted_ctr:.3f})"
        for name, tally in sorted(report.variants.items())
    )
    return (
        f"last {load.duration_s:g} s: {load.ok:,}/{load.planned:,} recommendations ok "
        f"(p99 {load.latency_all.p99_ms:.0f} ms), {report.clicks_sent:,} clicks; {variants}"
    )
