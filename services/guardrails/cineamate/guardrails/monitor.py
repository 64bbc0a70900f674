"""The guardrails' loop: watch serves and rewards, evaluate, roll back, record.

The reader follows every partition of ``serves`` and ``rewards`` (no consumer
group: each instance sees everything), starting a window's length of wall
time back, so a restart sees the recent past again. Every interval, each
running experiment is evaluated per variant; a breach that held for the
configured number of evaluations rolls the variant back (its users go to the
control) through the assignment service's API, or pauses the experiment when
the whole experiment's error rate breaches. The assignment service announces
the change on ``state-updates``, so every instance follows within a second.
Each rollback is stored with its figures, counted in
``cineamate_guardrail_rollbacks_total`` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter

from cineamate.common.dependencies import Dependencies
from cineamate.common.errors import DependencyUnavailable, InvalidEvent
from cineamate.common.events import GuardrailTriggered, RewardEvent, ServeEvent, utc_now
from cineamate.common.experiments import Experiment, fetch_experiment
from cineamate.common.kafka import OutgoingMessage, json_decoder
from cineamate.guardrails.rules import Check, Streaks, check_experiment, check_variant
from cineamate.guardrails.settings import GuardrailsSettings
from cineamate.guardrails.window import Windows

__all__ = ["GuardrailMonitor"]

_log = logging.getLogger(__name__)

ROLLBACKS = Counter(
    "cineamate_guardrail_rollbacks_total",
    "Automatic rollbacks (a variant to the control) and pauses (the whole experiment).",
    ("guardrail", "action"),
)
UNREADABLE = Counter(
    "cineamate_guardrail_unreadable_total", "Events the guardrails could not read.", ("topic",)
)


class GuardrailMonitor:
    """A Worker of the guardrails service."""

    name = "monitor"

    def __init__(self, settings: GuardrailsSettings, deps: Dependencies) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool = deps.pool
        self._producer = deps.producer
        self._window = timedelta(minutes=settings.window_minutes)
        self.windows = Windows(keep=self._window * 2)
        self._streaks = Streaks(settings.consecutive_breaches)
        self._rolled_back: dict[tuple[str, str], bool] = {}
        self._stopping = asyncio.Event()
        self._decode_serve = json_decoder(ServeEvent, max_bytes=settings.max_message_bytes)
        self._decode_reward = json_decoder(RewardEvent, max_bytes=settings.max_message_bytes)

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    await self.evaluate_all()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    _log.exception("guardrail evaluation failed; retrying next interval")
                if reader.done():
                    reader.result()  # a crashed reader crashes the worker, which restarts
                pause = self._settings.evaluation_interval_seconds - (time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), max(pause, 0.0))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def stop(self) -> None:
        self._stopping.set()

    async def _read(self) -> None:
        settings = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in (settings.serves_topic, settings.rewards_topic)
                for p in sorted(consumer.partitions_for_topic(topic) or {0})
            ]
            consumer.assign(partitions)
            since = int((time.time() - self._window.total_seconds()) * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, since))
            for partition, offset in found.items():
                if offset is None:
                    await consumer.seek_to_end(partition)
                else:
                    consumer.seek(partition, offset.offset)
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5_000)
                for partition, messages in batch.items():
                    for message in messages:
                        self._add(partition.topic, message.value)
        finally:
            await consumer.stop()

    def _add(self, topic: str, value: bytes | None) -> None:
        try:
            if topic == self._settings.serves_topic:
                serve = self._decode_serve(value)
                self.windows.add_serve(
                    serve.experiment_id,
                    serve.variant,
                    serve.served_at,
                    ok=serve.status == "ok",
                    latency_ms=serve.latency_ms,
                    items=[item.item_id for item in serve.items],
                )
            else:
                reward = self._decode_reward(value)
                clicks = sum(item.reward for item in reward.items)
                if clicks:
                    self.windows.add_clicks(
                        reward.experiment_id, reward.variant, reward.served_at, clicks
                    )
        except InvalidEvent:
            UNREADABLE.labels(topic).inc()

    async def evaluate_all(self) -> None:
        rows = await self._pool.fetch("SELECT id FROM experiments WHERE status = 'running'")
        for row in rows:
            experiment = await fetch_experiment(self._pool, row["id"])
            if experiment is not None:
                await self.evaluate(experiment)
        self.windows.prune()

    async def evaluate(self, experiment: Experiment) -> None:
        settings = self._settings
        config = experiment.config
        control = config.control.name
        stats = {
            v.name: self.windows.stats(experiment.id, v.name, self._window) for v in config.policies
        }
        results: list[tuple[str, Check]] = []
        # Variants still serving: the whole experiment's error rate is judged on them.
        serving = []
        for variant in config.policies:
            key = (experiment.id, variant.name)
            if self._rolled_back.get(key) and not variant.rolled_back:
                # An admin undid the rollback: judge the variant on what happens from now.
                self.windows.forget(experiment.id, variant.name)
                self._streaks.reset(experiment.id, variant.name)
            self._rolled_back[key] = variant.rolled_back
            checks = check_variant(
                stats[variant.name],
                None if variant.name == control else stats[control],
                config.guardrails,
                min_sample=settings.min_sample,
                alpha=settings.reward_drop_alpha,
            )
            results += [(variant.name, check) for check in checks]
            if variant.rolled_back:
                continue
            acted = False
            if variant.name != control:
                for check in checks:
                    if self._streaks.record(experiment.id, variant.name, check):
                        acted = await self._act(experiment, variant.name, check)
                        break
            if not acted:
                serving.append(stats[variant.name])
        overall = check_experiment(serving, config.guardrails, min_sample=settings.min_sample)
        results.append(("*", overall))
        if self._streaks.record(experiment.id, None, overall):
            await self._act(experiment, None, overall)
        await self._store_status(experiment.id, results)

    async def _act(self, experiment: Experiment, variant: str | None, check: Check) -> bool:
        """Roll ``variant`` back (or pause the experiment when None); True once done."""
        if variant is None:
            body: dict[str, Any] = {"status": "paused"}
            action = "pause"
        else:
            body = {"rolled_back": {variant: True}}
            action = "rollback"
        url = f"{self._settings.assignment_url.rstrip('/')}/api/experiments/{experiment.id}"
        token = self._settings.admin_token.get_secret_value() if self._settings.admin_token else ""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.patch(
                url, json=body, headers={"Authorization": f"Bearer {token}"}
            ) as answer:
                if answer.status >= 300:
                    text = await answer.text()
                    _log.error(
                        "rollback refused",
                        extra={"experiment": experiment.id, "status": answer.status, "body": text},
                    )
                    return False
        await self._pool.execute(
            "INSERT INTO guardrail_rollbacks (experiment_id, variant, guardrail, observed, "
            "threshold, window_seconds, action) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            experiment.id,
            variant,
            check.guardrail,
            check.observed,
            check.threshold,
            self._window.total_seconds(),
            action,
        )
        ROLLBACKS.labels(check.guardrail, action).inc()
        event = GuardrailTriggered(
            experiment_id=experiment.id,
            variant=variant,
            guardrail=check.guardrail,
            action=action,
            observed=check.observed or 0.0,  # a breach always has an observed value
            threshold=check.threshold,
            window_seconds=self._window.total_seconds(),
            triggered_at=utc_now(),
        )
        try:
            await self._producer.send(OutgoingMessage.of(self._settings.state_updates_topic, event))
        except DependencyUnavailable:
            _log.exception("could not announce the rollback; it is recorded in PostgreSQL")
        self._streaks.reset(experiment.id, variant)
        _log.warning(
            "guardrail breached: %s",
            action,
            extra={
                "experiment": experiment.id,
                "variant": variant,
                "guardrail": check.guardrail,
                "observed": check.observed,
                "threshold": check.threshold,
            },
        )
        return True

    async def _store_status(self, experiment_id: str, results: list[tuple[str, Check]]) -> None:
        now = datetime.now(UTC)
        await self._pool.executemany(
            "INSERT INTO guardrail_status (experiment_id, variant, guardrail, status, observed, "
            "threshold, sample, detail, evaluated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (experiment_id, variant, guardrail) DO UPDATE SET status = "
            "EXCLUDED.status, observed = EXCLUDED.observed, threshold = EXCLUDED.threshold, "
            "sample = EXCLUDED.sample, detail = EXCLUDED.detail, "
            "evaluated_at = EXCLUDED.evaluated_at",
            [
                (
                    experiment_id,
                    variant,
                    check.guardrail,
                    check.status,
                    check.observed,
                    check.threshold,
                    check.sample,
                    check.detail,
                    now,
                )
                for variant, check in results
            ],
        )
