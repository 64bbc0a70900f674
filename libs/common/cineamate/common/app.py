"""The FastAPI app factory every service uses.

It gives each service the same operational surface:

    GET /healthz   the process is alive (always 200 while it serves)
    GET /readyz    200 when every dependency and worker is up, else 503 with reasons
    GET /metrics   Prometheus text format

and the same error body ``{"error": {"code", "message", "field"?}}``, request
duration metrics per route template, the request limits of ``limits`` (body
size, CORS origins, rate), and a lifespan that connects the
dependencies in the background and runs the service's workers (its Kafka
consumer loops) once they are connected, restarting a crashed worker with
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cineamate.common.auth import TokenChecker
from cineamate.common.dependencies import Dependencies, Dependency
from cineamate.common.errors import CineamateError, DependencyUnavailable, status_of
from cineamate.common.limits import LimitPolicy, RequestLimits
from cineamate.common.metrics import BUILD_INFO, HTTP_REQUEST_SECONDS
from cineamate.common.outages import OUTAGES
from cineamate.common.settings import CommonSettings

__all__ = [
    "Worker",
    "WorkerFactory",
    "WorkerSpec",
    "create_service_app",
    "error_response",
    "status_of",
]

_log = logging.getLogger(__name__)

VERSION = "0.1.0"


class Worker(Protocol):
    """A long-running task of a service, such as a consumer loop."""

    name: str

    async def run(self) -> None:
        """Work until ``stop``; return normally when stopped."""

    async def stop(self) -> None:
        """Finish the unit of work in flight and make ``run`` return."""


WorkerFactory = Callable[[Dependencies], Worker]


@dataclass(frozen=True)
class WorkerSpec:
    """A named worker, built by ``factory`` once the dependencies are connected."""

    name: str
    factory: WorkerFactory


def error_response(error: CineamateError) -> JSONResponse:
    """The HTTP form of a platform error."""
    return JSONResponse({"error": error.to_dict()}, status_code=status_of(error))


def create_service_app(
    *,
    name: str,
    settings: CommonSettings,
    dependencies: Sequence[Dependency],
    routers: Sequence[APIRouter] = (),
    workers: Sequence[WorkerSpec] = (),
    gc_threshold: int | None = None,
) -> FastAPI:
    """A service app with health, readiness, metrics, errors and a managed lifespan;
    ``gc_threshold``, when given, replaces Python's threshold of the collector's youngest
    generation (700 allocations)."""
    deps = Dependencies(
        dependencies,
        retry_max_seconds=settings.dependency_retry_max_seconds,
        check_timeout=settings.readiness_timeout_seconds,
    )
    runner = _WorkerRunner(workers, deps, retry_max_seconds=settings.dependency_retry_max_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        BUILD_INFO.info({"service": name, "version": VERSION})
        deps.start()
        runner.start()
        # Everything imported and built so far lives as long as the process: keeping it out
        # of the collector's generations makes each collection of batch garbage cheaper.
        gc.freeze()
        if gc_threshold is not None:
            gc.set_threshold(gc_threshold, *gc.get_threshold()[1:])
        _log.info("service started")
        try:
            yield
        finally:
            await runner.stop()
            await deps.close()
            _log.info("service stopped")

    app = FastAPI(title=f"CineaMate {name}", version=VERSION, lifespan=lifespan)
    app.state.settings = settings
    app.state.tokens = TokenChecker(settings)
    app.state.limits = LimitPolicy(settings, app.state.tokens)
    app.state.dependencies = deps
    # Inside the metrics, so that limited requests are counted and name the service too.
    app.add_middleware(RequestLimits, policy=app.state.limits)
    app.add_middleware(_RequestMetrics, service=name)
    _add_error_handlers(app)
    app.include_router(_operations_router(name, deps, runner))
    for router in routers:
        app.include_router(router)
    return app


def _operations_router(name: str, deps: Dependencies, runner: _WorkerRunner) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        reasons = await deps.readiness()
        reasons.update(runner.readiness())
        checks = {check: reason or "ok" for check, reason in reasons.items()}
        ready = all(reason is None for reason in reasons.values())
        body = {"status": "ready" if ready else "unavailable", "service": name, "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CineamateError)
    async def platform_error(request: Request, exc: CineamateError) -> JSONResponse:
        return error_response(exc)

    async def outage(request: Request, exc: Exception) -> JSONResponse:
        # A store that cannot be reached is a 503 whoever forgot to translate it; the
        # message names the kind only, never an address.
        name = type(exc).__name__
        return error_response(
            DependencyUnavailable(
                f"a dependency is unavailable ({name})", code="unavailable.dependency"
            )
        )

    for kind in OUTAGES:
        if not issubclass(kind, CineamateError):
            app.add_exception_handler(kind, outage)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": ".".join(str(part) for part in error["loc"]),
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors()
        ]
        first = details[0] if details else {"field": "(request)", "message": "invalid request"}
        body = {
            "error": {
                "code": "invalid.request",
                "message": f"{first['field']}: {first['message']}",
                "field": first["field"],
                "details": details,
            }
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_ERROR_CODES.get(exc.status_code, f"http.{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"no route for {request.url.path}"
        return JSONResponse(
            {"error": {"code": code, "message": message}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


_HTTP_ERROR_CODES = {404: "not_found.route", 405: "invalid.method"}
_INTERNAL_ERROR = b'{"error":{"code":"internal","message":"internal error"}}'


class _RequestMetrics:
    """Records request duration by route template (not raw path, which is unbounded)
    and names the answering service in a response header."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self._app = app
        # Says which service answered when requests arrive through the public entry.
        self._service_header = (b"x-cineamate-service", service.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_status(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message = {
                    **message,
                    "headers": [*message.get("headers", []), self._service_header],
                }
            await send(message)

        try:
            await self._app(scope, receive, send_with_status)
        except Exception:
            # Answered here rather than by Starlette's outermost handler, so that the
            # response still names the service and the metric sees the 500.
            _log.exception("unhandled error", extra={"path": scope.get("path")})
            if started_response:
                raise
            await send_with_status(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_REQUEST_SECONDS.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )


class _WorkerRunner:
    """Runs workers once dependencies connect; restarts a crashed one with backoff."""

    def __init__(
        self, specs: Sequence[WorkerSpec], deps: Dependencies, *, retry_max_seconds: float
    ) -> None:
        self._specs = specs
        self._deps = deps
        self._retry_max_seconds = retry_max_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, Worker] = {}
        self._down: dict[str, str] = {spec.name: "waiting for dependencies" for spec in specs}
        self._stopping = False

    def start(self) -> None:
        for spec in self._specs:
            self._tasks.append(asyncio.create_task(self._supervise(spec), name=spec.name))

    def readiness(self) -> dict[str, str | None]:
        return {f"worker:{spec.name}": self._down.get(spec.name) for spec in self._specs}

    async def stop(self) -> None:
        self._stopping = True
        for worker in list(self._running.values()):
            with contextlib.suppress(Exception):
                await worker.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self, spec: WorkerSpec) -> None:
        await self._deps.wait_connected()
        delay = 0.5
        while not self._stopping:
            try:
                worker = spec.factory(self._deps)
                self._running[spec.name] = worker
                self._down.pop(spec.name, None)
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._running.pop(spec.name, None)
                self._down[spec.name] = f"crashed: {exc!r}; restarting"
                _log.exception("worker crashed, restarting", extra={"worker": spec.name})
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._retry_max_seconds)
