"""Limits every public HTTP entry applies before a request reaches its handler.

    RequestLimits   ASGI wrapper of a whole app: a body above CINEAMATE_MAX_REQUEST_BYTES
                    is 413, a client above CINEAMATE_RATE_LIMIT_PER_SECOND is 429 with
                    Retry-After, and only CINEAMATE_CORS_ORIGINS get CORS headers
                    (their preflight requests are answered here)
    LimitPolicy     the same decisions as plain calls, for a path served outside the
                    wrapper (the recommendation hot path)
    TokenBuckets    the rate limiter: one token bucket per key, O(1) per request

A client is its token when it presents a known one (one bucket per token,
whichever address it comes from), else its address (the TCP peer), so that
made-up tokens cannot buy fresh buckets. The services and the public entry
apply the same settings, each with buckets of its own. The operational paths
(/healthz, /readyz, /metrics) are never limited: probes and scrapers must
always get through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cineamate.common.auth import Role, TokenChecker
from cineamate.common.errors import (
    CineamateError,
    InvalidInput,
    RateLimited,
    TooLarge,
    status_of,
)
from cineamate.common.settings import ProcessSettings

__all__ = [
    "OPERATIONS_PATHS",
    "LimitPolicy",
    "RequestLimits",
    "TokenBuckets",
    "error_messages",
    "reject_nul_parameters",
    "retry_after",
]

OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
Header = tuple[bytes, bytes]

_ALLOWED_METHODS = b"GET, POST, PATCH, OPTIONS"
_ALLOWED_HEADERS = b"authorization, content-type, x-cineamate-actor"
_EXPOSED_HEADERS = b"retry-after, x-cineamate-service"
_PREFLIGHT_MAX_AGE = b"600"
_JSON = (b"content-type", b"application/json")


class TokenBuckets:
    """Per-key token buckets: each refills at ``rate`` tokens a second up to ``burst``,
    and a request takes one.

    >>> buckets = TokenBuckets(rate=10.0, burst=2)
    >>> buckets.take("client"), buckets.take("client"), buckets.take("client") > 0
    (0.0, 0.0, True)
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._sweep_at = max_keys
        # key -> [tokens left, when they were counted]
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable) -> float:
        """0.0 when a request of ``key`` may proceed, else the seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            bucket = self._buckets[key] = [self._burst, now]
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self._rate

    def _sweep(self, now: float) -> None:
        # A bucket that has refilled is as good as none; sweeping only when the table has
        # doubled keeps the cost per new key constant on average.
        full = [
            key
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self._rate >= self._burst
        ]
        for key in full:
            del self._buckets[key]
        self._sweep_at = max(self._max_keys, 2 * len(self._buckets))


class LimitPolicy:
    """The limits of one process, from its settings.

    >>> policy = LimitPolicy(settings, TokenChecker(settings))  # doctest: +SKIP
    >>> policy.admit(scope, role)  # raises RateLimited above the rate  # doctest: +SKIP
    """

    def __init__(self, settings: ProcessSettings, tokens: TokenChecker) -> None:
        self.max_request_bytes = settings.max_request_bytes
        self._tokens = tokens
        self._origins = settings.allowed_origins()
        self._buckets = (
            TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
            if settings.rate_limit_per_second > 0
            else None
        )

    def admit(self, scope: Scope, role: Role | None) -> None:
        """Count a request of ``role`` (None: unknown, counted by address); raises
        RateLimited when its client is above the rate."""
        if self._buckets is None:
            return
        key: Hashable = role if role is not None else _address(scope)
        wait = self._buckets.take(key)
        if wait:
            raise RateLimited(
                "too many requests: this client is above its request rate", retry_after=wait
            )

    def role_of(self, scope: Scope) -> Role | None:
        """The role of the request's bearer token, or None; never raises."""
        authorization = _header(scope, b"authorization")
        if authorization is None:
            return None
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self._tokens.role_of(token.strip())

    def cors_headers(self, scope: Scope) -> list[Header]:
        """The CORS headers of a response to ``scope``: none unless its origin is allowed."""
        if not self._origins:
            return []
        origin = _header(scope, b"origin")
        if origin is None or not self._allows(origin):
            return []
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", _EXPOSED_HEADERS),
            (b"vary", b"origin"),
        ]

    def preflight(self, scope: Scope) -> tuple[int, list[Header], bytes]:
        """The answer to a CORS preflight request: 204 for an allowed origin, else 403
        without CORS headers (the browser then refuses the actual request)."""
        allowed = self.cors_headers(scope)
        if not allowed:
            body = {"code": "forbidden.origin", "message": "this origin may not call the API"}
            return 403, [_JSON], orjson.dumps({"error": body})
        headers = [
            *allowed,
            (b"access-control-allow-methods", _ALLOWED_METHODS),
            (b"access-control-allow-headers", _ALLOWED_HEADERS),
            (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
        ]
        return 204, headers, b""

    def too_large(self) -> TooLarge:
        return TooLarge(
            f"the request body is larger than the limit of {self.max_request_bytes} bytes",
            field="body",
        )

    def _allows(self, origin: bytes) -> bool:
        return "*" in self._origins or origin.decode("latin-1") in self._origins


def retry_after(error: RateLimited) -> Header:
    """The Retry-After header of a 429: whole seconds, at least one."""
    return (b"retry-after", str(max(1, math.ceil(error.retry_after))).encode())


def error_messages(error: CineamateError, extra: list[Header]) -> tuple[Message, Message]:
    """The two ASGI messages of an error response, with Retry-After for RateLimited."""
    body = orjson.dumps({"error": error.to_dict()})
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
    if isinstance(error, RateLimited):
        headers.append(retry_after(error))
    return (
        {"type": "http.response.start", "status": status_of(error), "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class RequestLimits:
    """ASGI wrapper that applies a :class:`LimitPolicy` to every request but the
    operational paths.

    >>> app = RequestLimits(app, LimitPolicy(settings, tokens))  # doctest: +SKIP
    """

    def __init__(
        self, app: ASGIApp, policy: LimitPolicy, exempt: frozenset[str] = OPERATIONS_PATHS
    ) -> None:
        self._app = app
        self._policy = policy
        self._exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._exempt:
            await self._app(scope, receive, send)
            return
        policy = self._policy
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            status, headers, body = policy.preflight(scope)
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        cors = policy.cors_headers(scope)
        try:
            policy.admit(scope, policy.role_of(scope))
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > policy.max_request_bytes:
                raise policy.too_large()
            reject_nul_parameters(scope["query_string"])
        except (RateLimited, TooLarge, InvalidInput) as error:
            for message in error_messages(error, cors):
                await send(message)
            return
        if length is None and _has_chunked_body(scope):
            await _within_size(self._app, policy, cors, scope, receive, send)
            return
        if cors:
            send = _adding(send, cors)
        await self._app(scope, receive, send)


async def _within_size(
    app: ASGIApp,
    policy: LimitPolicy,
    cors: list[Header],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Run ``app`` on a body of unannounced length, answering 413 instead of whatever
    the app says once the body passes the limit."""
    limit = policy.max_request_bytes
    received = 0
    exceeded = False
    started = False

    async def receive_within() -> Message:
        nonlocal received, exceeded
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                exceeded = True
                raise policy.too_large()
        return message

    async def send_unless_exceeded(message: Message) -> None:
        nonlocal started
        if exceeded and not started:
            return
        if message["type"] == "http.response.start":
            started = True
            message = {**message, "headers": [*message.get("headers", []), *cors]}
        await send(message)

    try:
        await app(scope, receive_within, send_unless_exceeded)
    except Exception:
        if not exceeded or started:
            raise
    if exceeded and not started:
        for message in error_messages(policy.too_large(), cors):
            await send(message)


def _adding(send: Send, headers: list[Header]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return send_with_headers


def reject_nul_parameters(query_string: bytes) -> None:
    """Raise InvalidInput naming the query parameter that holds a NUL character: PostgreSQL
    text cannot store one, and no identifier or filter value has one."""
    if b"%00" not in query_string and b"\x00" not in query_string:
        return
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            raise InvalidInput("a NUL character in a parameter", field=f"query.{name[:32]}")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def _has_chunked_body(scope: Scope) -> bool:
    return _header(scope, b"transfer-encoding") is not None


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""
