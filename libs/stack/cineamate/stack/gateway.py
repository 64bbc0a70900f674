"""The public entry point: one port that forwards each path to the service that owns it.

It reads the routing table of ``routes`` (the one source of truth for every
front door), forwards over aiohttp's keep-alive connection pool, streams
request and response bodies in both directions, and answers its own
``/healthz``, ``/readyz`` (ready when every service is) and ``/metrics``.
Every other request passes the limits of ``cineamate.common.limits`` first
(body size, CORS origins, rate per client token or address).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic_settings import SettingsConfigDict
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cineamate.common.auth import TokenChecker
from cineamate.common.limits import LimitPolicy, RequestLimits
from cineamate.common.metrics import BUILD_INFO, HTTP_REQUEST_SECONDS
from cineamate.common.settings import DEFAULT_PORTS, ProcessSettings, setting
from cineamate.stack.routes import ROUTES, Route

__all__ = ["Gateway", "GatewaySettings", "create_gateway"]

# Headers that describe one connection, not the message (RFC 9110, section 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# The request body is re-streamed and the host is the service's; both are set anew.
_NOT_FORWARDED_REQUEST = _HOP_BY_HOP | {b"host", b"content-length"}
# This server writes its own date, and its own CORS headers (a second copy of
# access-control-allow-origin makes browsers refuse the response).
_NOT_FORWARDED_RESPONSE = _HOP_BY_HOP | {
    b"date",
    b"access-control-allow-origin",
    b"access-control-expose-headers",
}
_OWN_PATHS = ("/healthz", "/readyz", "/metrics")


def _upstream(name: str) -> str:
    return f"http://127.0.0.1:{DEFAULT_PORTS[name]}"


class GatewaySettings(ProcessSettings):
    """Where the public entry listens and where each service is."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_GATEWAY_")

    port: int = setting(DEFAULT_PORTS["gateway"], description="Public HTTP port of the platform.")
    upstream_timeout_seconds: float = setting(
        30.0, description="Time a service may take to start answering a forwarded request."
    )
    assignment_url: str = setting(
        _upstream("assignment"), env="CINEAMATE_ASSIGNMENT_URL", description="Assignment service."
    )
    policy_url: str = setting(
        _upstream("policy"), env="CINEAMATE_POLICY_URL", description="Policy service."
    )
    reward_url: str = setting(
        _upstream("reward"), env="CINEAMATE_REWARD_URL", description="Reward service."
    )
    guardrails_url: str = setting(
        _upstream("guardrails"), env="CINEAMATE_GUARDRAILS_URL", description="Guardrails service."
    )
    decision_url: str = setting(
        _upstream("decision"), env="CINEAMATE_DECISION_URL", description="Decision service."
    )
    analytics_url: str = setting(
        _upstream("analytics"), env="CINEAMATE_ANALYTICS_URL", description="Analytics service."
    )

    def upstreams(self) -> dict[str, str]:
        return {
            "assignment": self.assignment_url,
            "policy": self.policy_url,
            "reward": self.reward_url,
            "guardrails": self.guardrails_url,
            "decision": self.decision_url,
            "analytics": self.analytics_url,
        }


class Gateway:
    """ASGI reverse proxy over the routing table."""

    def __init__(
        self,
        upstreams: dict[str, str],
        *,
        routes: tuple[Route, ...] = ROUTES,
        timeout: float = 30.0,
    ) -> None:
        self._upstreams = {name: url.rstrip("/") for name, url in upstreams.items()}
        self._routes = routes
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        status = await self._handle(scope, receive, send)
        route = "own" if scope["path"] in _OWN_PATHS else "forwarded"
        HTTP_REQUEST_SECONDS.labels(route, scope["method"], str(status)).observe(
            time.perf_counter() - started
        )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> int:
        path: str = scope["path"]
        if path == "/healthz":
            response: Response = JSONResponse({"status": "ok", "service": "gateway"})
        elif path == "/readyz":
            response = await self._readiness()
        elif path == "/metrics":
            response = Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
        else:
            service = next((r.service for r in self._routes if r.matches(path)), None)
            if service is None or service not in self._upstreams:
                response = _error(404, "not_found.route", f"no service answers {path}")
            else:
                return await self._forward(service, scope, receive, send)
        await response(scope, receive, send)
        return response.status_code

    async def _forward(self, service: str, scope: Scope, receive: Receive, send: Send) -> int:
        assert self._session is not None
        target = self._upstreams[service] + scope["raw_path"].decode("latin-1")
        query = scope.get("query_string", b"")
        if query:
            target += "?" + query.decode("latin-1")
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.lower() not in _NOT_FORWARDED_REQUEST
        )
        client = scope.get("client")
        if client:
            headers.add("x-forwarded-for", client[0])
        body = _body(receive) if _has_body(scope) else None
        try:
            async with self._session.request(
                scope["method"], target, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                response_headers = [
                    (k, v)
                    for k, v in upstream.raw_headers
                    if k.lower() not in _NOT_FORWARDED_RESPONSE
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": upstream.status,
                        "headers": response_headers,
                    }
                )
                async for chunk in upstream.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return upstream.status
        except TimeoutError:
            response = _error(504, "unavailable.timeout", f"the {service} service did not answer")
        except aiohttp.ClientConnectionError:
            response = _error(502, "unavailable.upstream", f"the {service} service is unreachable")
        await response(scope, receive, send)
        return response.status_code

    async def _readiness(self) -> Response:
        assert self._session is not None
        session = self._session

        async def check(base: str) -> str:
            try:
                async with session.get(
                    f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=2.0)
                ) as answer:
                    await answer.read()
                    return "ok" if answer.status == 200 else f"not ready ({answer.status})"
            except (aiohttp.ClientError, TimeoutError) as exc:
                return f"unreachable: {type(exc).__name__}"

        names = list(self._upstreams)
        results = await asyncio.gather(*(check(self._upstreams[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(result == "ok" for result in results)
        body = {
            "status": "ready" if ready else "unavailable",
            "service": "gateway",
            "checks": checks,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                BUILD_INFO.info({"service": "gateway", "version": "0.1.0"})
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=512, limit_per_host=256),
                    timeout=self._timeout,
                    auto_decompress=False,
                    skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _body(receive: Receive):  # type: ignore[no-untyped-def]
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _has_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"transfer-encoding" or (key == b"content-length" and value != b"0"):
            return True
    return False


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_gateway(settings: GatewaySettings) -> ASGIApp:
    """The public entry, forwarding to the services named in ``settings`` within the
    request limits (body size, CORS origins, rate) of ``settings``."""
    gateway = Gateway(settings.upstreams(), timeout=settings.upstream_timeout_seconds)
    return RequestLimits(gateway, LimitPolicy(settings, TokenChecker(settings)))
