"""Redis access: one asyncio client per process, with hiredis parsing."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cineamate.common.errors import DependencyUnavailable

__all__ = ["connect_redis"]


async def connect_redis(url: str, *, timeout: float = 5.0) -> Redis:
    """A connected client; an unreachable server raises DependencyUnavailable."""
    client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise DependencyUnavailable(f"redis: {exc}", code="unavailable.redis") from exc
    return client
