"""Drive a running experiment as users would: open-loop recommendations, planted clicks.

Request i asks ``GET /api/movies/recommendations`` for the i-th drawn user of a
``Population`` (her id and cohort attributes in the query), at its planned time
whatever the platform answers (``run_open_loop``). When a slate comes back,
each of its items is clicked with the ``ClickModel``'s probability, and the
clicks are posted in batches to ``POST /api/events/clicks`` by a sender beside
the engine, so a slow click never delays a recommendation. Every variant's
expected clicks under the model are summed as its slates arrive, so the
report puts each variant's observed CTR next to its planted one and next to
the best slate's.

    >>> config = LiveConfig(port=8000, experiment_id="e1", rate=5, duration=60, client_key=k)
    >>> report = await run_live(config, Population.from_movielens(data),
    ...                         ClickModel.from_movielens(data))  # doctest: +SKIP
    >>> print("\\n".join(report.summary_lines()))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson

from cineamate.loadgen.clicks import ClickModel
from cineamate.loadgen.openloop import (
    DEFAULT_CONNECTIONS,
    LOOPBACK_HOST,
    OpenLoopConfig,
    run_open_loop,
)
from cineamate.loadgen.report import LoadReport
from cineamate.loadgen.users import Population

__all__ = ["RECOMMENDATIONS_PATH", "LiveConfig", "LiveReport", "VariantTally", "run_live"]

RECOMMENDATIONS_PATH = "/api/movies/recommendations"
CLICKS_PATH = "/api/events/clicks"
# The assignment service's default for CINEAMATE_ASSIGNMENT_MAX_CLICKS_PER_REQUEST.
_CLICK_BATCH = 1_000
_CLICK_FLUSH_SECONDS = 0.05
_CLICK_SENDERS = 4
_CLICK_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class LiveConfig:
    """Which experiment, where, how fast and for how long; who pays for the clicks."""

    port: int
    experiment_id: str
    rate: float
    duration: float
    warmup: float = 0.0
    client_key: str | None = None
    connections: int = DEFAULT_CONNECTIONS
    grace: float = 2.0
    seed: int = 0
    host: str = LOOPBACK_HOST

    def open_loop(self) -> OpenLoopConfig:
        return OpenLoopConfig(
            port=self.port,
            rate=self.rate,
            duration=self.duration,
            warmup=self.warmup,
            connections=self.connections,
            grace=self.grace,
            host=self.host,
        )


@dataclass
class VariantTally:
    """What one variant served and what its users clicked, with the model's expectations."""

    serves: int = 0
    impressions: int = 0
    clicks: int = 0
    expected_clicks: float = 0.0
    best_clicks: float = 0.0

    @property
    def ctr(self) -> float:
        """Clicks per shown item."""
        return self.clicks / self.impressions if self.impressions else math.nan

    @property
    def planted_ctr(self) -> float:
        """The CTR the model expects of the slates this variant served."""
        return self.expected_clicks / self.impressions if self.impressions else math.nan

    @property
    def best_ctr(self) -> float:
        """The CTR the best slates would have had for the same users."""
        return self.best_clicks / self.impressions if self.impressions else math.nan

    def as_dict(self) -> dict[str, float]:
        return {
            "serves": self.serves,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "ctr": self.ctr,
            "planted_ctr": self.planted_ctr,
            "best_ctr": self.best_ctr,
        }


@dataclass
class LiveReport:
    """The open-loop report of the recommendations, the clicks sent, and each variant."""

    load: LoadReport
    variants: dict[str, VariantTally]
    clicks_sent: int = 0
    clicks_failed: int = 0
    click_failures: list[str] = field(default_factory=list)

    @property
    def best_variant(self) -> str | None:
        """The variant whose slates the planted model rates highest."""
        return _argmax({name: tally.planted_ctr for name, tally in self.variants.items()})

    @property
    def best_variant_observed(self) -> str | None:
        """The variant with the highest observed CTR."""
        return _argmax({name: tally.ctr for name, tally in self.variants.items()})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "load": self.load.as_dict(),
            "clicks_sent": self.clicks_sent,
            "clicks_failed": self.clicks_failed,
            "click_failures": self.click_failures,
            "variants": {name: tally.as_dict() for name, tally in sorted(self.variants.items())},
            "best_variant_planted": self.best_variant,
            "best_variant_observed": self.best_variant_observed,
        }

    def summary_lines(self) -> list[str]:
        """The summary a person reads at the end of a run."""
        load = self.load
        latency = load.latency_all
        errors = ", ".join(f"{code} {count}" for code, count in load.errors_by_status.items())
        lines = [
            f"recommendations: {load.planned:,} planned at {load.planned_rate_per_s:g}/s, "
            f"{load.ok:,} ok, achieved {load.achieved_rate_per_s:,.1f}/s",
            f"latency from the planned time (ms): p50 {latency.p50_ms:.1f}  "
            f"p90 {latency.p90_ms:.1f}  p99 {latency.p99_ms:.1f}  p99.9 {latency.p999_ms:.1f}  "
            f"max {latency.max_ms:.1f}",
            f"errors: {errors or 'none'}; timeouts {load.timeouts}; unsent {load.unsent}",
            f"clicks: {self.clicks_sent:,} sent, {self.clicks_failed:,} failed",
            f"{'variant':<16} {'serves':>8} {'shown':>9} {'clicks':>8} {'CTR':>7} "
            f"{'planted':>8} {'best':>7}",
        ]
        for name, tally in sorted(self.variants.items()):
            lines.append(
                f"{name:<16} {tally.serves:>8,} {tally.impressions:>9,} {tally.clicks:>8,} "
                f"{tally.ctr:>7.4f} {tally.planted_ctr:>8.4f} {tally.best_ctr:>7.4f}"
            )
        lines.append(
            f"best variant by the planted model: {self.best_variant}; "
            f"by observed CTR: {self.best_variant_observed}"
        )
        return lines


async def run_live(
    config: LiveConfig,
    population: Population,
    model: ClickModel,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> LiveReport:
    """Drive ``config.experiment_id``; ``on_progress`` gets 1 as each request ends."""
    open_loop = config.open_loop()
    total = open_loop.schedule.total
    rng = np.random.default_rng(config.seed)
    drawn = population.draw(total, rng)
    queries = {int(user): population.query(int(user)) for user in np.unique(drawn)}
    head = f"{RECOMMENDATIONS_PATH}?experiment_id={config.experiment_id}&"
    headers = {"Authorization": f"Bearer {config.client_key}"} if config.client_key else {}
    variants: dict[str, VariantTally] = {}
    sender = _ClickSender(f"http://{open_loop.authority}", headers)

    def request(index: int) -> tuple[str, dict[str, str]]:
        return head + queries[int(drawn[index])], headers

    def answered(index: int, status: int, body: bytes) -> None:
        if on_progress is not None:
            on_progress(1)
        if not 200 <= status < 300:
            return
        try:
            serve = orjson.loads(body)
            item_ids = [int(item["movie_id"]) for item in serve["items"]]
            variant, serve_id = str(serve["variant"]), str(serve["serve_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        user = int(drawn[index])
        cohort = int(population.cohorts[user])
        probabilities = model.probabilities(cohort, item_ids)
        clicked = rng.random(len(item_ids)) < probabilities
        tally = variants.setdefault(variant, VariantTally())
        tally.serves += 1
        tally.impressions += len(item_ids)
        tally.clicks += int(clicked.sum())
        tally.expected_clicks += float(probabilities.sum())
        tally.best_clicks += model.best_ctr(cohort, len(item_ids)) * len(item_ids)
        user_id = population.user_ids[user]
        for position in np.flatnonzero(clicked).tolist():
            sender.add({"serve_id": serve_id, "movie_id": item_ids[position], "user_id": user_id})

    async with sender:
        load = await run_open_loop(open_loop, request, answered)
    return LiveReport(load, variants, sender.sent, sender.failed, sender.failures)


class _ClickSender:
    """Posts the clicks added to it in batches, a few batches in flight at a time."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=_CLICK_TIMEOUT_SECONDS
        )
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.failed = 0
        self.failures: list[str] = []

    def add(self, click: dict[str, Any]) -> None:
        self._pending.append(click)
        if len(self._pending) >= _CLICK_BATCH:
            self._wake.set()

    async def __aenter__(self) -> _ClickSender:
        self._tasks = [asyncio.create_task(self._send_batches()) for _ in range(_CLICK_SENDERS)]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        self._wake.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await self._http.aclose()

    async def _send_batches(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _CLICK_FLUSH_SECONDS)
                self._wake.clear()
                continue
            batch, self._pending = self._pending[:_CLICK_BATCH], self._pending[_CLICK_BATCH:]
            await self._post(batch)

    async def _post(self, batch: list[dict[str, Any]]) -> None:
        try:
            answer = await self._http.post(CLICKS_PATH, json=batch)
        except httpx.HTTPError as exc:
            self._fail(len(batch), type(exc).__name__)
            return
        if answer.status_code == 202:
            self.sent += len(batch)
        else:
            self._fail(len(batch), f"{answer.status_code} {answer.text[:200]}")

    def _fail(self, count: int, reason: str) -> None:
        self.failed += count
        if len(self.failures) < 5:
            self.failures.append(reason)


def _argmax(values: dict[str, float]) -> str | None:
    known = {name: value for name, value in values.items() if not math.isnan(value)}
    return max(known, key=known.__getitem__) if known else None
