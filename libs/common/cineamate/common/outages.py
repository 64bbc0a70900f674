"""Which exceptions mean "a dependency is down" rather than "this input is bad".

Stores translate their errors at the boundary where they can; this is the net
under them. A consumer retries a batch that fails with one of these instead of
dead-lettering its records, and an HTTP route answers 503 instead of 500.
"""

from __future__ import annotations

import asyncpg
import redis.exceptions

from cineamate.common.errors import DependencyUnavailable

__all__ = ["OUTAGES", "is_outage"]

OUTAGES: tuple[type[Exception], ...] = (
    DependencyUnavailable,
    ConnectionError,
    TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,
)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says a dependency is down (retry) rather than the input is bad."""
    return isinstance(error, OUTAGES)
