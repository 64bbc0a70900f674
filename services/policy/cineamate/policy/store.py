"""Where the learner keeps posteriors: hot in Redis, snapshotted to PostgreSQL.

Redis, per (experiment, variant):

    cineamate:posterior:{experiment}:{variant}   hash: arm_ids, pulls, successes (packed
                                                 arrays), version, offset:<partition>
    cineamate:seen:{experiment}:{variant}:<hour> set of applied reward ids (expires)

A batch is written by one Lua script that checks the version it was computed
from, so the counts, the offsets they include and the ids they consumed change
together or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import asyncpg
import numpy as np
import orjson
from redis.asyncio import Redis

from cineamate.policies import ArmState
from cineamate.policy.service import PosteriorKey

__all__ = ["PosteriorStore", "SnapshotStore", "StoredPosterior"]

_PREFIX = "cineamate:posterior:"
_SEEN_PREFIX = "cineamate:seen:"
_OFFSET_FIELD = "offset:"

# Compare-and-set write of a posterior; see the module docstring.
# ARGV: expected version ('' = key must not exist), arm_ids, pulls, successes, new version,
#       number of offset pairs, (field, value)*, ttl, then one newline-joined id list per seen set.
_SAVE_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'arm_ids', ARGV[2], 'pulls', ARGV[3], 'successes', ARGV[4],
           'version', ARGV[5])
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local ttl = tonumber(ARGV[i])
i = i + 1
for k = 2, #KEYS do
  for id in string.gmatch(ARGV[i], '[^\\n]+') do
    redis.call('SADD', KEYS[k], id)
  end
  redis.call('EXPIRE', KEYS[k], ttl)
  i = i + 1
end
return 1
"""


@dataclass(frozen=True)
class StoredPosterior:
    """A posterior and, per reward partition, the last offset its counts include."""

    state: ArmState
    offsets: dict[int, int] = field(default_factory=dict)


def _posterior_key(key: PosteriorKey) -> str:
    return f"{_PREFIX}{key.experiment_id}:{key.variant}"


def _seen_key(key: PosteriorKey, bucket: int) -> str:
    return f"{_SEEN_PREFIX}{key.experiment_id}:{key.variant}:{bucket}"


class PosteriorStore:
    """Posteriors in Redis, written atomically with their offsets and consumed reward ids."""

    def __init__(self, client: Redis, *, dedup_window_seconds: int) -> None:
        self._client = client
        self._dedup_window_seconds = dedup_window_seconds
        self._save = client.register_script(_SAVE_SCRIPT)

    async def load(self, key: PosteriorKey) -> StoredPosterior | None:
        fields = cast(dict[bytes, bytes], await self._client.hgetall(_posterior_key(key)))
        if not fields:
            return None
        offsets = {
            int(name[len(_OFFSET_FIELD) :]): int(value)
            for raw_name, value in fields.items()
            if (name := raw_name.decode()).startswith(_OFFSET_FIELD)
        }
        return StoredPosterior(ArmState.from_hash(fields), offsets)

    async def seen(self, key: PosteriorKey, rewards: Sequence[tuple[str, datetime]]) -> set[str]:
        """Which of these reward ids were applied before (within the dedup window)."""
        by_bucket: dict[int, list[str]] = defaultdict(list)
        for reward_id, rewarded_at in rewards:
            by_bucket[self._bucket(rewarded_at)].append(reward_id)
        async with self._client.pipeline(transaction=False) as pipe:
            for bucket, ids in by_bucket.items():
                pipe.smismember(_seen_key(key, bucket), ids)
            answers = await pipe.execute()
        seen: set[str] = set()
        for ids, flags in zip(by_bucket.values(), answers, strict=True):
            seen.update(reward_id for reward_id, flag in zip(ids, flags, strict=True) if flag)
        return seen

    async def save(
        self,
        key: PosteriorKey,
        *,
        expected_version: int | None,
        state: ArmState,
        offsets: dict[int, int],
        consumed: Iterable[tuple[str, datetime]] = (),
    ) -> bool:
        """Write the posterior if the stored version is still ``expected_version``
        (None: only if none is stored). False when another writer got there first."""
        by_bucket: dict[int, list[str]] = defaultdict(list)
        for reward_id, rewarded_at in consumed:
            by_bucket[self._bucket(rewarded_at)].append(reward_id)
        packed = state.to_hash()
        args: list[bytes | str | int] = [
            "" if expected_version is None else str(expected_version),
            packed["arm_ids"],
            packed["pulls"],
            packed["successes"],
            packed["version"],
            len(offsets),
        ]
        for partition, offset in offsets.items():
            args += [f"{_OFFSET_FIELD}{partition}", str(offset)]
        args.append(self._dedup_window_seconds + 3600)
        keys = [_posterior_key(key)]
        for bucket, ids in by_bucket.items():
            keys.append(_seen_key(key, bucket))
            args.append("\n".join(ids))
        return bool(await self._save(keys=keys, args=args))

    async def keys(self) -> list[PosteriorKey]:
        """Every posterior stored in Redis."""
        found = []
        async for raw in self._client.scan_iter(match=f"{_PREFIX}*", count=500):
            experiment_id, _, variant = raw.decode()[len(_PREFIX) :].partition(":")
            found.append(PosteriorKey(experiment_id, variant))
        return found

    def _bucket(self, rewarded_at: datetime) -> int:
        return int(rewarded_at.timestamp()) // 3600


class SnapshotStore:
    """Posterior snapshots in PostgreSQL: counts per arm and the offsets they cover."""

    def __init__(self, pool: asyncpg.Pool, *, keep: int) -> None:
        self._pool = pool
        self._keep = keep

    async def write(self, key: PosteriorKey, stored: StoredPosterior) -> None:
        state = stored.state
        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await connection.fetchval(
                "INSERT INTO posterior_snapshots (experiment_id, variant, version, offsets) "
                "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING RETURNING version",
                key.experiment_id,
                key.variant,
                state.version,
                orjson.dumps({str(p): o for p, o in stored.offsets.items()}).decode(),
            )
            if inserted is None:
                return
            await connection.copy_records_to_table(
                "posterior_snapshot_arms",
                records=zip(
                    [key.experiment_id] * state.n_arms,
                    [key.variant] * state.n_arms,
                    [state.version] * state.n_arms,
                    state.arm_ids.tolist(),
                    state.pulls.tolist(),
                    state.successes.tolist(),
                    strict=True,
                ),
                columns=["experiment_id", "variant", "version", "arm_id", "pulls", "successes"],
            )
            await connection.execute(
                "DELETE FROM posterior_snapshots WHERE experiment_id = $1 AND variant = $2 "
                "AND version NOT IN (SELECT version FROM posterior_snapshots "
                "WHERE experiment_id = $1 AND variant = $2 ORDER BY version DESC LIMIT $3)",
                key.experiment_id,
                key.variant,
                self._keep,
            )

    async def latest(self, key: PosteriorKey) -> StoredPosterior | None:
        async with self._pool.acquire() as connection:
            header = await connection.fetchrow(
                "SELECT version, offsets FROM posterior_snapshots "
                "WHERE experiment_id = $1 AND variant = $2 ORDER BY version DESC LIMIT 1",
                key.experiment_id,
                key.variant,
            )
            if header is None:
                return None
            rows = await connection.fetch(
                "SELECT arm_id, pulls, successes FROM posterior_snapshot_arms "
                "WHERE experiment_id = $1 AND variant = $2 AND version = $3 ORDER BY arm_id",
                key.experiment_id,
                key.variant,
                header["version"],
            )
        state = ArmState(
            np.array([row["arm_id"] for row in rows], dtype=np.int64),
            np.array([row["pulls"] for row in rows]),
            np.array([row["successes"] for row in rows]),
            header["version"],
        )
        offsets = {int(p): int(o) for p, o in orjson.loads(header["offsets"]).items()}
        return StoredPosterior(state, offsets)
