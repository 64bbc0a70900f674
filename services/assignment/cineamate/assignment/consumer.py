"""Follows ``state-updates`` so every assignment instance learns of changes within a second.

Every instance must see every update, so this reader joins no consumer group:
it takes all partitions and starts at their end. ``ExperimentChanged`` reloads
the experiment; ``PosteriorUpdate`` tells the posterior cache a newer version
is available.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from cineamate.assignment.cache import ExperimentRegistry, PosteriorCache
from cineamate.common.errors import DependencyUnavailable
from cineamate.common.events import ExperimentChanged, PosteriorUpdate, state_update_adapter

__all__ = ["StateUpdatesFollower"]

_log = logging.getLogger(__name__)


class StateUpdatesFollower:
    """A Worker of the assignment service."""

    name = "state-updates"

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        registry: ExperimentRegistry,
        posteriors: PosteriorCache,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._registry = registry
        self._posteriors = posteriors
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers, enable_auto_commit=False
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise DependencyUnavailable(f"kafka: {exc}", code="unavailable.kafka") from exc
        self._consumer = consumer
        try:
            await consumer.topics()  # loads the cluster metadata
            partitions = consumer.partitions_for_topic(self._topic)
            if not partitions:
                raise DependencyUnavailable(
                    f"kafka: topic {self._topic!r} does not exist yet", code="unavailable.kafka"
                )
            assigned = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_end(*assigned)
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                for messages in batch.values():
                    for message in messages:
                        await self._dispatch(message.value)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        self._stopping.set()

    async def _dispatch(self, value: bytes | None) -> None:
        try:
            update = state_update_adapter.validate_json(value or b"")
        except ValidationError:
            return  # not ours to judge: the producers of this topic own its contents
        if isinstance(update, PosteriorUpdate):
            self._posteriors.announce(update.experiment_id, update.variant, update.version)
        elif isinstance(update, ExperimentChanged):
            await self._registry.reload(update.experiment_id)
            _log.info(
                "experiment reloaded",
                extra={"experiment": update.experiment_id, "revision": update.revision},
            )
