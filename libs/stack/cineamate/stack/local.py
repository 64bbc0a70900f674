"""The stores the platform runs on: external when configured, embedded otherwise.

``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` and ``REDIS_URL`` each name an
existing server; any of them left unset is replaced by an embedded server on
127.0.0.1 with its files under the home directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cineamate.stack.embedded import EmbeddedBroker, EmbeddedPostgres, EmbeddedRedis, EmbeddedServer

__all__ = ["LocalStack"]


class LocalStack:
    """Connection URLs of the broker, PostgreSQL and Redis, starting embedded ones as needed.

    >>> with LocalStack(Path(".cineamate")) as stack:  # doctest: +SKIP
    ...     print(stack.database_url)
    """

    def __init__(
        self,
        home: Path,
        *,
        durable: bool = True,
        environ: Mapping[str, str] = os.environ,
        store_nice: int = 0,
    ) -> None:
        self.home = home
        self.durable = durable
        # PostgreSQL and Redis serve the consumers and the control routes, never a
        # recommendation: embedded ones can run this many steps below the broker's priority.
        self.store_nice = store_nice
        self._environ = environ
        self.embedded: list[EmbeddedServer] = []
        self.kafka_bootstrap_servers = environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        self.database_url = environ.get("DATABASE_URL", "")
        self.redis_url = environ.get("REDIS_URL", "")

    def start(self) -> LocalStack:
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            if not self.kafka_bootstrap_servers:
                self.kafka_bootstrap_servers = self._start(EmbeddedBroker(self.home / "broker")).url
            if not self.database_url:
                postgres = EmbeddedPostgres(self.home / "postgres", durable=self.durable)
                postgres.nice = self.store_nice
                self.database_url = self._start(postgres).url
            if not self.redis_url:
                redis = EmbeddedRedis(self.home / "redis", durable=self.durable)
                redis.nice = self.store_nice
                self.redis_url = self._start(redis).url
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(self.embedded):
            server.stop()
        self.embedded.clear()

    def environment(self) -> dict[str, str]:
        """The connection variables for child processes."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
        }

    def describe(self) -> dict[str, str]:
        """Where each store is, and whether it is embedded, for the start-up banner."""
        kinds = {type(server).__name__: server for server in self.embedded}
        return {
            "kafka": _describe(self.kafka_bootstrap_servers, "EmbeddedBroker" in kinds),
            "postgres": _describe(_redact(self.database_url), "EmbeddedPostgres" in kinds),
            "redis": _describe(_redact(self.redis_url), "EmbeddedRedis" in kinds),
        }

    def _start(self, server: EmbeddedServer) -> EmbeddedServer:
        server.start()
        self.embedded.append(server)
        return server

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _describe(url: str, embedded: bool) -> str:
    return f"{url} ({'embedded' if embedded else 'external'})"


def _redact(url: str) -> str:
    """Hide a password in a URL for display."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    if ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}@{host}"
