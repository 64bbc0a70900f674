"""What the recommendation hot path reads, kept in process memory.

    ExperimentRegistry   experiments compiled for serving: allocation, policy objects,
                         catalogue and titles; reloaded on change events
    PosteriorCache       each variant's posterior from Redis, refreshed when the learner
                         announces a new version, at most once per staleness window

Neither touches PostgreSQL or Redis on a request once warm. A Thompson
posterior's propensities are computed in a worker thread before the new
posterior replaces the old one, so no request waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import cast

import asyncpg
import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cineamate.assignment.bucketing import Allocation
from cineamate.assignment.store import catalogue_titles
from cineamate.common.experiments import Experiment, fetch_catalogue, fetch_experiment
from cineamate.policies import ArmState, Policy, make_policy

__all__ = ["ExperimentRegistry", "LiveExperiment", "PosteriorCache"]

_log = logging.getLogger(__name__)

# How long "no such experiment" is remembered, so unknown ids cannot flood PostgreSQL.
_MISSING_TTL_SECONDS = 1.0


@dataclass
class LiveExperiment:
    """An experiment ready to serve."""

    experiment: Experiment
    allocation: Allocation
    policies: dict[str, Policy]
    arm_ids: list[int]
    titles: dict[int, str]
    loaded_at: float = field(default_factory=time.monotonic)


class ExperimentRegistry:
    """Experiments by id, loaded on first use and reloaded on change."""

    def __init__(self, pool: asyncpg.Pool, *, refresh_seconds: float) -> None:
        self._pool = pool
        self._refresh_seconds = refresh_seconds
        self._live: dict[str, LiveExperiment] = {}
        self._missing: dict[str, float] = {}
        self._catalogues: dict[str, tuple[list[int], dict[int, str]]] = {}
        self._policies: dict[tuple[str, str, str, str], Policy] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[LiveExperiment | None]] = set()

    async def get(self, experiment_id: str) -> LiveExperiment | None:
        live = self._live.get(experiment_id)
        now = time.monotonic()
        if live is not None:
            if now - live.loaded_at >= self._refresh_seconds:
                # Serve what we have; one background reload catches up.
                live.loaded_at = now
                task = asyncio.create_task(self.reload(experiment_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return live
        missing_since = self._missing.get(experiment_id)
        if missing_since is not None and now - missing_since < _MISSING_TTL_SECONDS:
            return None
        return await self.reload(experiment_id)

    async def reload(self, experiment_id: str) -> LiveExperiment | None:
        lock = self._locks.setdefault(experiment_id, asyncio.Lock())
        async with lock:
            experiment = await fetch_experiment(self._pool, experiment_id)
            if experiment is None:
                self._live.pop(experiment_id, None)
                self._missing[experiment_id] = time.monotonic()
                return None
            self.install(experiment, await self.catalogue_of(experiment))
            return self._live[experiment_id]

    def install(self, experiment: Experiment, catalogue: tuple[list[int], dict[int, str]]) -> None:
        """Serve ``experiment`` from now on (the instance that changed it calls this at once)."""
        policies = {}
        for variant in experiment.config.policies:
            # Policy objects carry per-state caches; keep them while the config is unchanged.
            key = (experiment.id, variant.name, variant.type, repr(sorted(variant.params.items())))
            policy = self._policies.get(key)
            if policy is None:
                policy = self._policies[key] = make_policy(variant.type, variant.params)
            policies[variant.name] = policy
        arm_ids, titles = catalogue
        self._live[experiment.id] = LiveExperiment(
            experiment, Allocation.from_json(experiment.allocation), policies, arm_ids, titles
        )
        self._missing.pop(experiment.id, None)

    async def catalogue_of(self, experiment: Experiment) -> tuple[list[int], dict[int, str]]:
        """The experiment's arm ids and titles, read once per catalogue."""
        catalogue = experiment.config.catalogue
        cache_key = catalogue if isinstance(catalogue, str) else f"literal:{experiment.id}"
        cached = self._catalogues.get(cache_key)
        if cached is None:
            arm_ids = await fetch_catalogue(self._pool, catalogue)
            titles = await catalogue_titles(self._pool, catalogue)
            cached = self._catalogues[cache_key] = (arm_ids, titles)
        return cached


def _posterior_key(experiment_id: str, variant: str) -> str:
    # The learner's layout (services/policy store.py); services share it through Redis only.
    return f"cineamate:posterior:{experiment_id}:{variant}"


@dataclass
class _Entry:
    state: ArmState
    loaded_at: float
    announced_version: int = -1
    refreshing: bool = False


class PosteriorCache:
    """Posteriors per (experiment, variant), refreshed from Redis in the background."""

    def __init__(self, redis: Redis, *, staleness_seconds: float) -> None:
        self._redis = redis
        self._staleness = staleness_seconds
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._first_loads: dict[tuple[str, str], asyncio.Task[ArmState]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def state(self, live: LiveExperiment, variant: str) -> ArmState:
        key = (live.experiment.id, variant)
        entry = self._entries.get(key)
        if entry is None:
            # One first load per posterior, however many requests arrive meanwhile.
            loading = self._first_loads.get(key)
            if loading is None:
                loading = asyncio.create_task(self._load(live, variant))
                self._first_loads[key] = loading
            try:
                state = await asyncio.shield(loading)
            finally:
                if loading.done():
                    self._first_loads.pop(key, None)
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(state, time.monotonic())
            return entry.state
        due = time.monotonic() - entry.loaded_at >= self._staleness
        if (
            due
            and not entry.refreshing
            and (
                entry.announced_version > entry.state.version
                or time.monotonic() - entry.loaded_at >= 10 * self._staleness
            )
        ):
            entry.refreshing = True
            task = asyncio.create_task(self._refresh(live, variant, entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return entry.state

    def announce(self, experiment_id: str, variant: str, version: int) -> None:
        """The learner published ``version``; fetch it when the staleness window allows."""
        entry = self._entries.get((experiment_id, variant))
        if entry is not None and version > entry.announced_version:
            entry.announced_version = version

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh(self, live: LiveExperiment, variant: str, entry: _Entry) -> None:
        try:
            stored = await self._redis.hget(_posterior_key(live.experiment.id, variant), "version")
            if stored is not None and int(stored) == entry.state.version:
                return
            state = await self._load(live, variant)
            if state.version != entry.state.version:
                await self._prepare(live, variant, state)
                entry.state = state
        except Exception:
            _log.exception("posterior refresh failed; serving the cached one")
        finally:
            entry.loaded_at = time.monotonic()
            entry.refreshing = False

    async def _load(self, live: LiveExperiment, variant: str) -> ArmState:
        key = _posterior_key(live.experiment.id, variant)
        try:
            fields = cast(dict[bytes, bytes], await self._redis.hgetall(key))
        except (RedisError, OSError):
            _log.warning("redis unreachable; serving the prior", extra={"posterior": key})
            fields = {}
        if fields:
            state = ArmState.from_hash(fields)
        else:
            state = ArmState.empty(np.asarray(live.arm_ids, dtype=np.int64))
        await self._prepare(live, variant, state)
        return state

    async def _prepare(self, live: LiveExperiment, variant: str, state: ArmState) -> None:
        """Compute what the policy caches per state (Thompson: threshold and propensities)
        in a worker thread, so that requests never pay for it."""
        policy = live.policies[variant]
        k = live.experiment.config.slate_size
        await asyncio.to_thread(policy.inclusion_probabilities, state, k)
        await asyncio.to_thread(policy.choose, state, k, np.random.default_rng(0))
