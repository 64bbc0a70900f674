"""The servers a service depends on, connected in the background and checked on demand.

A service starts answering HTTP before its dependencies are reachable: each
dependency is connected by its own task with capped exponential backoff, so
a missing broker, database or cache shows up in ``/readyz`` with its reason
instead of a crash loop. Once connected, the client libraries reconnect by
themselves; ``/readyz`` keeps checking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence

import asyncpg
from redis.asyncio import Redis

from cineamate.common.errors import DependencyUnavailable
from cineamate.common.kafka.producer import EventProducer
from cineamate.common.metrics import DEPENDENCY_UP
from cineamate.common.postgres import create_pool
from cineamate.common.redis import connect_redis
from cineamate.common.settings import CommonSettings

__all__ = [
    "Dependencies",
    "Dependency",
    "KafkaDependency",
    "PostgresDependency",
    "RedisDependency",
    "standard_dependencies",
]

_log = logging.getLogger(__name__)


class Dependency(ABC):
    """A server the process needs."""

    name: str

    @abstractmethod
    async def connect(self) -> None:
        """Establish the client; raise DependencyUnavailable when the server is unreachable."""

    @abstractmethod
    async def check(self) -> None:
        """Round-trip to the server; raise on failure."""

    @abstractmethod
    async def close(self) -> None:
        """Release the client."""


class PostgresDependency(Dependency):
    name = "postgres"

    def __init__(self, dsn: str, *, max_size: int = 10) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DependencyUnavailable("postgres: not connected yet", code="unavailable.postgres")
        return self._pool

    async def connect(self) -> None:
        self._pool = await create_pool(self._dsn, max_size=self._max_size)

    async def check(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class RedisDependency(Dependency):
    name = "redis"

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: Redis | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise DependencyUnavailable("redis: not connected yet", code="unavailable.redis")
        return self._client

    async def connect(self) -> None:
        self._client = await connect_redis(self._url)

    async def check(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class KafkaDependency(Dependency):
    """The broker, reached through the process's producer."""

    name = "kafka"

    def __init__(self, settings: CommonSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: EventProducer | None = None

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:
            raise DependencyUnavailable("kafka: not connected yet", code="unavailable.kafka")
        return self._producer

    async def connect(self) -> None:
        producer = EventProducer(
            self._settings.kafka_bootstrap_servers,
            client_id=self._client_id,
            linger_ms=self._settings.kafka_linger_ms,
            max_batch_bytes=self._settings.kafka_max_batch_bytes,
            buffer_limit=self._settings.producer_buffer_limit,
        )
        await producer.start()
        self._producer = producer

    async def check(self) -> None:
        await self.producer.client.fetch_all_metadata()  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


class Dependencies:
    """Connects dependencies in the background and answers readiness.

    >>> deps = Dependencies([PostgresDependency(dsn)], retry_max_seconds=10)  # doctest: +SKIP
    >>> deps.start(); await deps.wait_connected()  # doctest: +SKIP
    >>> await deps.readiness()  # doctest: +SKIP
    {'postgres': None}
    """

    def __init__(
        self,
        dependencies: Sequence[Dependency],
        *,
        retry_max_seconds: float = 10.0,
        check_timeout: float = 1.0,
    ) -> None:
        self._dependencies = {dep.name: dep for dep in dependencies}
        self._retry_max_seconds = retry_max_seconds
        self._check_timeout = check_timeout
        self._connected = {name: asyncio.Event() for name in self._dependencies}
        self._last_error: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def __getitem__(self, name: str) -> Dependency:
        return self._dependencies[name]

    @property
    def names(self) -> list[str]:
        return list(self._dependencies)

    @property
    def producer(self) -> EventProducer:
        """The process's Kafka producer (the ``kafka`` dependency must be declared)."""
        kafka = self._dependencies["kafka"]
        assert isinstance(kafka, KafkaDependency)
        return kafka.producer

    @property
    def pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool (the ``postgres`` dependency must be declared)."""
        postgres = self._dependencies["postgres"]
        assert isinstance(postgres, PostgresDependency)
        return postgres.pool

    @property
    def redis(self) -> Redis:
        """The Redis client (the ``redis`` dependency must be declared)."""
        redis = self._dependencies["redis"]
        assert isinstance(redis, RedisDependency)
        return redis.client

    def start(self) -> None:
        """Begin connecting every dependency."""
        for name, dependency in self._dependencies.items():
            DEPENDENCY_UP.labels(name).set(0)
            self._tasks.append(
                asyncio.create_task(self._connect(dependency), name=f"connect-{name}")
            )

    async def wait_connected(self) -> None:
        """Return once every dependency has connected."""
        await asyncio.gather(*(event.wait() for event in self._connected.values()))

    async def readiness(self) -> dict[str, str | None]:
        """Per dependency: None when it answered its check, else the reason it did not."""
        names = list(self._dependencies)
        results = await asyncio.gather(*(self._check(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name, dependency in self._dependencies.items():
            if self._connected[name].is_set():
                with contextlib.suppress(Exception):
                    await dependency.close()

    async def _check(self, name: str) -> str | None:
        if not self._connected[name].is_set():
            return f"connecting: {self._last_error.get(name, 'first attempt pending')}"
        try:
            await asyncio.wait_for(self._dependencies[name].check(), self._check_timeout)
        except TimeoutError:
            DEPENDENCY_UP.labels(name).set(0)
            return f"no answer within {self._check_timeout:g} s"
        except Exception as exc:
            DEPENDENCY_UP.labels(name).set(0)
            return f"{type(exc).__name__}: {exc}"
        DEPENDENCY_UP.labels(name).set(1)
        return None

    async def _connect(self, dependency: Dependency) -> None:
        delay = 0.2
        attempts = 0
        while True:
            attempts += 1
            try:
                await dependency.connect()
            except Exception as exc:
                reason = str(exc) if isinstance(exc, DependencyUnavailable) else repr(exc)
                self._last_error[dependency.name] = reason
                # The first failure and then every tenth keep the log readable during an outage.
                if attempts == 1 or attempts % 10 == 0:
                    _log.warning(
                        "dependency unreachable, retrying",
                        extra={"dependency": dependency.name, "error": reason, "attempt": attempts},
                    )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._retry_max_seconds)
                continue
            DEPENDENCY_UP.labels(dependency.name).set(1)
            self._connected[dependency.name].set()
            _log.info("dependency connected", extra={"dependency": dependency.name})
            return


def standard_dependencies(
    settings: CommonSettings,
    *,
    client_id: str,
    kafka: bool = True,
    postgres: bool = True,
    redis: bool = True,
) -> list[Dependency]:
    """The dependencies a service declares, built from the shared settings."""
    chosen: list[Dependency] = []
    if kafka:
        chosen.append(KafkaDependency(settings, client_id=client_id))
    if postgres:
        chosen.append(
            PostgresDependency(
                settings.database_url.get_secret_value(), max_size=settings.postgres_pool_max_size
            )
        )
    if redis:
        chosen.append(RedisDependency(settings.redis_url.get_secret_value()))
    return chosen
