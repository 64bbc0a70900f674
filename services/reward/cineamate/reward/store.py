"""Where the join keeps its state between batches: Redis, one set of keys per partition.

    cineamate:join:{group}:{serves topic}:{p}:pending    hash  serve id -> open serve
    ...:deadlines                                        zset  serve id -> window end
    ...:held                                             hash  serve id -> clicks waiting
    ...:held-due                                         zset  serve id -> when they expire
    ...:closed                                           zset  serve id -> window end
    ...:closed-info                                      hash  serve id -> experiment, variant
    ...:meta                                             hash  applied offsets, watermark,
                                                               latest event time per input

A batch reads the entries its events name and those due at its watermark,
and writes its changes and its offsets in one MULTI/EXEC, so the state and
the offsets it includes move together. Times are event-time microseconds.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from cineamate.common.kafka import RawRecord
from cineamate.reward.join import ClickIn, ClosedServe, JoinState, PendingServe, SlateItem

__all__ = ["INPUTS", "JoinMeta", "JoinStore"]

# The two inputs of a join partition, as named in the meta hash.
INPUTS = ("serves", "clicks")


@dataclass
class JoinMeta:
    """Per partition: the last offset applied of each input, the watermark, input clocks."""

    applied: dict[str, int] = field(default_factory=dict)
    watermark: int = -(2**62)
    latest: dict[str, int] = field(default_factory=dict)

    @classmethod
    def decode(cls, raw: dict[bytes, bytes]) -> JoinMeta:
        meta = cls()
        for name, value in raw.items():
            key = name.decode()
            if key == "watermark":
                meta.watermark = int(value)
            elif key.startswith("applied:"):
                meta.applied[key.removeprefix("applied:")] = int(value)
            elif key.startswith("latest:"):
                meta.latest[key.removeprefix("latest:")] = int(value)
        return meta

    def encode(self) -> dict[str, int]:
        fields = {"watermark": self.watermark}
        fields |= {f"applied:{name}": offset for name, offset in self.applied.items()}
        fields |= {f"latest:{name}": time for name, time in self.latest.items()}
        return fields


class JoinStore:
    """Reads and writes the join state of the partitions of one consumer group."""

    def __init__(self, redis: Redis, *, namespace: str, click_grace: int, retention: int) -> None:
        self._redis = redis
        self._namespace = namespace
        self._click_grace = click_grace
        self._retention = retention

    def _key(self, partition: int, part: str) -> str:
        return f"cineamate:join:{self._namespace}:{partition}:{part}"

    async def meta(self, partition: int) -> JoinMeta:
        raw = await self._redis.hgetall(self._key(partition, "meta"))
        return JoinMeta.decode(cast(dict[bytes, bytes], raw))

    async def load(
        self, partition: int, serve_ids: Sequence[str], *, watermark: int, max_due: int
    ) -> JoinState:
        """The entries ``serve_ids`` name, and the serves and held clicks due at ``watermark``."""
        key = self._key
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(key(partition, "deadlines"), "-inf", f"({watermark}", 0, max_due)
            pipe.zrangebyscore(key(partition, "held-due"), "-inf", f"({watermark}", 0, max_due)
            pipe.zrangebyscore(
                key(partition, "closed"), "-inf", f"({watermark - self._retention}", 0, max_due
            )
            due_serves, due_held, forgotten = await pipe.execute()
        pending_ids = list(dict.fromkeys([*serve_ids, *(i.decode() for i in due_serves)]))
        held_ids = list(dict.fromkeys([*serve_ids, *(i.decode() for i in due_held)]))
        state = JoinState(watermark=watermark)
        state.forgotten = [serve_id.decode() for serve_id in forgotten]
        if not pending_ids and not held_ids:
            return state
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(key(partition, "pending"), pending_ids or ["-"])
            pipe.hmget(key(partition, "held"), held_ids or ["-"])
            pipe.hmget(key(partition, "closed-info"), list(serve_ids) or ["-"])
            pending, held, closed = await pipe.execute()
        for serve_id, blob in zip(pending_ids, pending, strict=False):
            if blob is not None:
                state.pending[serve_id] = _decode_serve(serve_id, blob)
        for serve_id, blob in zip(held_ids, held, strict=False):
            if blob is not None:
                state.held[serve_id] = _decode_clicks(serve_id, blob)
        state.closed = {
            serve_id: _decode_closed(blob)
            for serve_id, blob in zip(serve_ids, closed, strict=False)
            if blob is not None
        }
        return state

    async def save(self, partition: int, state: JoinState, meta: JoinMeta) -> None:
        """The view's changes and the new meta, all or nothing."""
        key = self._key
        async with self._redis.pipeline(transaction=True) as pipe:
            opened = {s: state.pending[s] for s in state.changed_pending}
            if opened:
                pipe.hset(
                    key(partition, "pending"),
                    mapping={s: _encode_serve(serve) for s, serve in opened.items()},
                )
                pipe.zadd(
                    key(partition, "deadlines"),
                    {s: serve.window_end for s, serve in opened.items()},
                )
            if state.removed_pending:
                pipe.hdel(key(partition, "pending"), *state.removed_pending)
                pipe.zrem(key(partition, "deadlines"), *state.removed_pending)
            if state.changed_held:
                held = {s: state.held[s] for s in state.changed_held}
                pipe.hset(
                    key(partition, "held"),
                    mapping={s: _encode_clicks(clicks) for s, clicks in held.items()},
                )
                pipe.zadd(
                    key(partition, "held-due"),
                    {
                        s: min(c.clicked_at for c in clicks) + self._click_grace
                        for s, clicks in held.items()
                    },
                )
            if state.removed_held:
                pipe.hdel(key(partition, "held"), *state.removed_held)
                pipe.zrem(key(partition, "held-due"), *state.removed_held)
            if state.newly_closed:
                pipe.zadd(
                    key(partition, "closed"),
                    {s: closed.window_end for s, closed in state.newly_closed.items()},
                )
                pipe.hset(
                    key(partition, "closed-info"),
                    mapping={s: _encode_closed(c) for s, c in state.newly_closed.items()},
                )
            if state.forgotten:
                pipe.zrem(key(partition, "closed"), *state.forgotten)
                pipe.hdel(key(partition, "closed-info"), *state.forgotten)
            pipe.hset(key(partition, "meta"), mapping=meta.encode())  # type: ignore[arg-type]
            await pipe.execute()

    async def drop(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (tests and tools)."""
        parts = ("pending", "deadlines", "held", "held-due", "closed", "closed-info", "meta")
        keys = [self._key(p, part) for p in partitions for part in parts]
        if keys:
            await self._redis.delete(*keys)


def _encode_serve(serve: PendingServe) -> bytes:
    return orjson.dumps(
        [
            serve.experiment_id,
            serve.variant,
            serve.policy_type,
            serve.served_at,
            serve.window_end,
            serve.items,
            serve.clicked,
            serve.user_id,
            serve.cohort,
        ]
    )


def _decode_serve(serve_id: str, blob: bytes) -> PendingServe:
    experiment, variant, policy, served_at, window_end, items, clicked, user, cohort = orjson.loads(
        blob
    )
    slate: tuple[SlateItem, ...] = tuple((int(i), int(p), float(q)) for i, p, q in items)
    return PendingServe(
        serve_id,
        experiment,
        variant,
        policy,
        served_at,
        window_end,
        slate,
        list(clicked),
        user,
        tuple((str(k), str(v)) for k, v in cohort),
    )


def _encode_closed(closed: ClosedServe) -> bytes:
    return orjson.dumps([closed.experiment_id, closed.variant, closed.window_end])


def _decode_closed(blob: bytes) -> ClosedServe:
    experiment, variant, window_end = orjson.loads(blob)
    return ClosedServe(experiment, variant, window_end)


def _encode_clicks(clicks: list[ClickIn]) -> bytes:
    return orjson.dumps([_encode_click(click) for click in clicks])


def _encode_click(click: ClickIn) -> list[Any]:
    source = click.source
    return [
        click.item_id,
        click.user_id,
        click.clicked_at,
        source.topic,
        source.partition,
        source.offset,
        base64.b64encode(source.key).decode() if source.key is not None else None,
        base64.b64encode(source.value).decode() if source.value is not None else None,
        source.timestamp_ms,
    ]


def _decode_clicks(serve_id: str, blob: bytes) -> list[ClickIn]:
    clicks = []
    for item, user, clicked_at, topic, partition, offset, key, value, ts in orjson.loads(blob):
        source = RawRecord(
            topic,
            partition,
            offset,
            base64.b64decode(key) if key is not None else None,
            base64.b64decode(value) if value is not None else None,
            ts,
        )
        clicks.append(ClickIn(serve_id, item, user, clicked_at, source))
    return clicks
