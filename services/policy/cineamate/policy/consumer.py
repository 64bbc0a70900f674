"""The learner's consumer loop: rewards in, posteriors in Redis out.

Per batch: reject rewards for unknown experiments, variants or arms (dead
letters); per posterior, drop what was applied before (offset or reward id),
add the rest to the counts, and write counts, offset and consumed ids in one
compare-and-set; then announce the new version on ``state-updates``.

A posterior missing from Redis (first reward, or Redis lost its data) is
rebuilt from its latest PostgreSQL snapshot plus the rewards after the
snapshot's offset, read back from the rewards topic, before the batch applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from cineamate.common.dependencies import Dependencies
from cineamate.common.errors import InvalidEvent
from cineamate.common.events import PosteriorUpdate, RewardEvent, utc_now
from cineamate.common.experiments import ExperimentCache
from cineamate.common.kafka import (
    BatchConsumer,
    EventProducer,
    OutgoingMessage,
    RawRecord,
    Record,
    Rejected,
    json_decoder,
)
from cineamate.policies import ArmState
from cineamate.policy.service import (
    Outcome,
    PosteriorKey,
    fresh_outcomes,
    group_by_posterior,
    outcomes_of,
)
from cineamate.policy.settings import PolicySettings
from cineamate.policy.store import PosteriorStore, SnapshotStore, StoredPosterior

__all__ = ["RewardLearner"]

_log = logging.getLogger(__name__)

# Attempts at a compare-and-set write before the batch is retried as a whole.
_MAX_CONFLICTS = 5


class RewardLearner:
    """Consumes ``rewards`` and keeps posteriors current; a Worker of the policy service."""

    name = "learner"

    def __init__(self, settings: PolicySettings, deps: Dependencies) -> None:
        self._settings = settings
        self._producer: EventProducer = deps.producer
        self.posteriors = PosteriorStore(
            deps.redis, dedup_window_seconds=settings.dedup_window_seconds
        )
        self.snapshots = SnapshotStore(deps.pool, keep=settings.snapshots_kept)
        self.experiments = ExperimentCache(deps.pool, ttl_seconds=settings.experiment_cache_seconds)
        self._consumer = BatchConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=[settings.rewards_topic],
            group_id=settings.consumer_group,
            decode=json_decoder(RewardEvent, max_bytes=settings.max_message_bytes),
            handle=self.handle,
            dead_letters=self._producer,
            dead_letter_topic=settings.dead_letter_topic,
            max_records=settings.consumer_max_records,
            retry_max_seconds=settings.dependency_retry_max_seconds,
        )
        self._snapshotted: dict[PosteriorKey, int] = {}
        self._snapshot_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        await self._consumer.start()
        self._snapshot_task = asyncio.create_task(self._snapshot_periodically())
        await self._consumer.run()

    async def stop(self) -> None:
        await self._consumer.stop()
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshot_task
        with contextlib.suppress(Exception):
            await self.snapshot_all()

    async def handle(self, records: list[Record[RewardEvent]]) -> Sequence[Rejected]:
        """Apply a batch of rewards; return the ones that cannot be applied."""
        rejected: list[Rejected] = []
        updates: list[PosteriorUpdate] = []
        for key, group in group_by_posterior(records).items():
            experiment = await self.experiments.get(key.experiment_id)
            if experiment is None:
                error = InvalidEvent(
                    f"unknown experiment {key.experiment_id!r}", code="invalid.experiment"
                )
                rejected += [Rejected.of(record, error) for record in group]
                continue
            if experiment.config.variant(key.variant) is None:
                error = InvalidEvent(
                    f"experiment {key.experiment_id!r} has no variant {key.variant!r}",
                    code="invalid.variant",
                )
                rejected += [Rejected.of(record, error) for record in group]
                continue
            catalogue = await self.experiments.catalogue(experiment)
            for partition in sorted({record.raw.partition for record in group}):
                in_partition = [r for r in group if r.raw.partition == partition]
                update, unknown = await self._apply(key, catalogue, partition, in_partition)
                rejected += unknown
                if update is not None:
                    updates.append(update)
        for update in updates:
            self._producer.publish(OutgoingMessage.of(self._settings.state_updates_topic, update))
        return rejected

    async def _apply(
        self,
        key: PosteriorKey,
        catalogue: list[int],
        partition: int,
        records: list[Record[RewardEvent]],
    ) -> tuple[PosteriorUpdate | None, list[Rejected]]:
        for _ in range(_MAX_CONFLICTS):
            stored = await self.posteriors.load(key)
            if stored is None:
                first_offset = min(record.raw.offset for record in records)
                stored = await self._rebuild(key, catalogue, partition, first_offset)
            identities = [(o.reward_id, o.rewarded_at) for o in outcomes_of(records)]
            seen = await self.posteriors.seen(key, identities)
            fresh = fresh_outcomes(records, stored.offsets, seen)
            positions = stored.state.lookup([o.item_id for o in fresh])
            unknown = _unknown_items(key, fresh, positions)
            applied = [o for o, position in zip(fresh, positions, strict=True) if position >= 0]
            state = (
                stored.state.updated([o.item_id for o in applied], [o.reward for o in applied])
                if applied
                else stored.state
            )
            offsets = stored.offsets | {partition: max(r.raw.offset for r in records)}
            saved = await self.posteriors.save(
                key,
                expected_version=stored.state.version,
                state=state,
                offsets=offsets,
                consumed=[(o.reward_id, o.rewarded_at) for o in applied],
            )
            if saved:
                return _update_of(key, stored.state, state, applied), unknown
            _log.info("posterior changed concurrently, retrying", extra={"posterior": str(key)})
        raise RuntimeError(f"posterior {key} kept changing under the learner")

    async def _rebuild(
        self, key: PosteriorKey, catalogue: list[int], partition: int, before_offset: int
    ) -> StoredPosterior:
        """The posterior from its latest snapshot plus the rewards after it, stored in Redis."""
        snapshot = await self.snapshots.latest(key)
        stored = snapshot or StoredPosterior(ArmState.empty(catalogue), {})
        start = stored.offsets.get(partition, -1) + 1
        replayed = 0
        if start < before_offset:
            rewards = await self._read_rewards(partition, start, before_offset, key)
            fresh = fresh_outcomes(rewards, stored.offsets, set())
            state = stored.state.updated([o.item_id for o in fresh], [o.reward for o in fresh])
            stored = StoredPosterior(state, stored.offsets | {partition: before_offset - 1})
            replayed = len(fresh)
        if not await self.posteriors.save(
            key, expected_version=None, state=stored.state, offsets=stored.offsets
        ):
            reloaded = await self.posteriors.load(key)
            assert reloaded is not None
            return reloaded
        _log.info(
            "posterior rebuilt",
            extra={
                "posterior": f"{key.experiment_id}:{key.variant}",
                "from_snapshot_version": snapshot.state.version if snapshot else None,
                "rewards_replayed": replayed,
            },
        )
        return stored

    async def _read_rewards(
        self, partition: int, start: int, stop: int, key: PosteriorKey
    ) -> list[Record[RewardEvent]]:
        """Rewards of ``key`` at offsets [start, stop) of one partition, read back from Kafka."""
        decode = json_decoder(RewardEvent, max_bytes=self._settings.max_message_bytes)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        found: list[Record[RewardEvent]] = []
        try:
            tp = TopicPartition(self._settings.rewards_topic, partition)
            reader.assign([tp])
            reader.seek(tp, start)
            position = start
            while position < stop:
                batch = await reader.getmany(tp, timeout_ms=1000, max_records=5000)
                messages = batch.get(tp, [])
                if not messages:
                    break
                for message in messages:
                    position = message.offset + 1
                    if message.offset >= stop:
                        break
                    try:
                        event = decode(message.value)
                    except InvalidEvent:
                        continue
                    if (event.experiment_id, event.variant) == (key.experiment_id, key.variant):
                        raw = RawRecord(
                            message.topic,
                            message.partition,
                            message.offset,
                            message.key,
                            message.value,
                            message.timestamp,
                        )
                        found.append(Record(raw, event))
        finally:
            await reader.stop()
        return found

    async def snapshot_all(self) -> int:
        """Snapshot every posterior whose version moved since its last snapshot."""
        written = 0
        for key in await self.posteriors.keys():
            stored = await self.posteriors.load(key)
            if stored is None or self._snapshotted.get(key) == stored.state.version:
                continue
            await self.snapshots.write(key, stored)
            self._snapshotted[key] = stored.state.version
            written += 1
        return written

    async def _snapshot_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._settings.snapshot_interval_seconds)
            try:
                await self.snapshot_all()
            except Exception:
                _log.exception("snapshot failed; retrying at the next interval")


def _unknown_items(
    key: PosteriorKey, outcomes: list[Outcome], positions: np.ndarray
) -> list[Rejected]:
    """One rejection per record with outcomes for items outside the catalogue."""
    missing: dict[int, tuple[Record[RewardEvent], list[int]]] = {}
    for outcome, position in zip(outcomes, positions, strict=True):
        if position < 0:
            entry = missing.setdefault(id(outcome.record), (outcome.record, []))
            entry[1].append(outcome.item_id)
    return [
        Rejected.of(
            record,
            InvalidEvent(
                f"items {items} are not in the catalogue of {key.experiment_id!r}",
                code="invalid.arm",
            ),
        )
        for record, items in missing.values()
    ]


def _update_of(
    key: PosteriorKey, before: ArmState, after: ArmState, applied: list[Outcome]
) -> PosteriorUpdate | None:
    if not applied:
        return None
    changed = np.flatnonzero(after.pulls != before.pulls)
    return PosteriorUpdate(
        experiment_id=key.experiment_id,
        variant=key.variant,
        version=after.version,
        arm_ids=after.arm_ids[changed].tolist(),
        pulls=after.pulls[changed].tolist(),
        successes=after.successes[changed].tolist(),
        updated_at=utc_now(),
    )
