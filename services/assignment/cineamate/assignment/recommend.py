"""The recommendation hot path, served straight from ASGI.

``GET /api/movies/recommendations`` is the one route that must answer
thousands of times a second, so it does not go through the framework's
routing, dependency solving and middleware (FastAPI's own layers cost more
than the whole answer): ``RecommendationEndpoint`` wraps the FastAPI app from
the outside and answers that path itself, with the same authentication, rate
limit, CORS headers, error body, metrics and service header as every other
route. The FastAPI route of the same path documents the contract in the
OpenAPI schema.

Per request: check the client key and the client's rate, parse the query, assign the user,
select the slate from the cached posterior, answer, and hand the serve event
(JSON built directly, no model validation) to the spool-backed publisher.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from prometheus_client import Histogram
from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from cineamate.assignment.runtime import AssignmentRuntime
from cineamate.assignment.service import assign
from cineamate.common.auth import Role, TokenChecker
from cineamate.common.errors import (
    CineamateError,
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    RateLimited,
    status_of,
)
from cineamate.common.events import SCHEMA_VERSION
from cineamate.common.kafka import OutgoingMessage
from cineamate.common.limits import LimitPolicy, reject_nul_parameters, retry_after
from cineamate.common.metrics import HTTP_REQUEST_SECONDS, RECOMMENDATION_SECONDS

__all__ = ["PATH", "RecommendationEndpoint", "recommend"]

_log = logging.getLogger(__name__)

PATH = "/api/movies/recommendations"
# Query parameters with a meaning of their own; any other one is a cohort attribute.
_PARAMETERS = frozenset({"experiment_id", "user_id", "k"})
_MAX_COHORT_ATTRIBUTES = 10
_JSON = (b"content-type", b"application/json")
_SERVICE = (b"x-cineamate-service", b"assignment")


def parse_query(query_string: bytes) -> tuple[str, str, int | None, dict[str, str]]:
    """experiment_id, user_id, k and the cohort attributes; InvalidInput names the field."""
    # This path runs ahead of RequestLimits, so it makes the same check itself.
    reject_nul_parameters(query_string)
    values: dict[str, str] = {}
    cohort: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in _PARAMETERS:
            values[name] = value
        else:
            if len(name) > 32 or len(value) > 64:
                raise InvalidInput(
                    "cohort attributes are at most 32 characters, their values 64",
                    field=f"query.{name[:32]}",
                )
            cohort[name] = value
    if len(cohort) > _MAX_COHORT_ATTRIBUTES:
        raise InvalidInput(
            f"at most {_MAX_COHORT_ATTRIBUTES} cohort attributes", field="query.cohort"
        )
    experiment_id = values.get("experiment_id", "")
    if not 1 <= len(experiment_id) <= 64:
        raise InvalidInput(
            "experiment_id is required (1 to 64 characters)", field="query.experiment_id"
        )
    user_id = values.get("user_id", "")
    if not 1 <= len(user_id) <= 128:
        raise InvalidInput("user_id is required (1 to 128 characters)", field="query.user_id")
    k: int | None = None
    if "k" in values:
        try:
            k = int(values["k"])
        except ValueError:
            raise InvalidInput("k must be an integer", field="query.k") from None
        if not 1 <= k <= 100:
            raise InvalidInput("k must lie between 1 and 100", field="query.k")
    return experiment_id, user_id, k, cohort


async def recommend(
    runtime: AssignmentRuntime,
    experiment_id: str,
    user_id: str,
    k: int | None,
    cohort: dict[str, str],
) -> bytes:
    """The JSON answer for one request; emits its serve event."""
    started = time.perf_counter()
    live = await runtime.registry.get(experiment_id)
    if live is None:
        raise NotFound(f"no experiment {experiment_id!r}", code="not_found.experiment")
    experiment = live.experiment
    if experiment.status == "draft":
        raise Conflict(f"experiment {experiment_id!r} has not started", code="conflict.not_running")
    variant = experiment.config.variant(assign(experiment, live.allocation, user_id).variant)
    assert variant is not None
    serve_id = os.urandom(16).hex()
    status = "error"
    items: list[dict[str, Any]] = []
    version = 0
    try:
        state = await runtime.posteriors.state(live, variant.name)
        version = state.version
        selection = live.policies[variant.name].select(
            state, k or experiment.config.slate_size, runtime.rng
        )
        titles = live.titles
        items = [
            {"movie_id": arm, "title": titles.get(arm, ""), "position": position, "propensity": p}
            for position, (arm, p) in enumerate(
                zip(selection.arm_ids.tolist(), selection.propensities.tolist(), strict=True)
            )
        ]
        status = "ok"
    finally:
        elapsed = time.perf_counter() - started
        _histogram(RECOMMENDATION_SECONDS, experiment_id, variant.name, status).observe(elapsed)
        event = _serve_event(
            serve_id, experiment_id, variant.name, variant.type, user_id, items, cohort,
            version, elapsed, status,
        )  # fmt: skip
        runtime.publisher.publish(
            OutgoingMessage(runtime.settings.serves_topic, event, serve_id.encode())
        )
    return orjson.dumps(
        {
            "serve_id": serve_id,
            "experiment_id": experiment_id,
            "user_id": user_id,
            "variant": variant.name,
            "policy_type": variant.type,
            "items": items,
            "state_version": version,
        }
    )


@functools.lru_cache(maxsize=4096)
def _histogram(metric: Histogram, *labels: str) -> Histogram:
    """A labelled child, looked up once: ``labels()`` costs more than the observation."""
    return metric.labels(*labels)


def _serve_event(
    serve_id: str,
    experiment_id: str,
    variant: str,
    policy_type: str,
    user_id: str,
    items: list[dict[str, Any]],
    cohort: dict[str, str],
    state_version: int,
    elapsed_seconds: float,
    status: str,
) -> bytes:
    """A ServeEvent's wire form (tests check it against the model)."""
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "serve_id": serve_id,
            "experiment_id": experiment_id,
            "variant": variant,
            "policy_type": policy_type,
            "user_id": user_id,
            "items": [
                {"item_id": i["movie_id"], "position": i["position"], "propensity": i["propensity"]}
                for i in items
            ],
            "cohort": cohort,
            "state_version": state_version,
            "latency_ms": elapsed_seconds * 1000.0,
            "status": status,
            "served_at": datetime.now(UTC),
        }
    )


class RecommendationEndpoint:
    """Answers the recommendation path and passes everything else to the FastAPI app.

    >>> entry = RecommendationEndpoint(app)  # doctest: +SKIP  (what uvicorn serves)
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._state = app.state
        self._limits: LimitPolicy = app.state.limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = [_JSON, _SERVICE, *self._limits.cors_headers(scope)]
        try:
            body = await _answer(scope, self._state, self._limits)
            status = 200
        except CineamateError as error:
            status, body = status_of(error), orjson.dumps({"error": error.to_dict()})
            if isinstance(error, RateLimited):
                headers.append(retry_after(error))
        except Exception:
            _log.exception("recommendation failed", extra={"path": PATH})
            status, body = 500, b'{"error":{"code":"internal","message":"internal error"}}'
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        _histogram(HTTP_REQUEST_SECONDS, PATH, "GET", str(status)).observe(
            time.perf_counter() - started
        )


async def _answer(scope: Scope, state: State, limits: LimitPolicy) -> bytes:
    tokens: TokenChecker = state.tokens
    authorization = next(
        (value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"),
        None,
    )
    limits.admit(scope, tokens.check(authorization, Role.CLIENT))
    runtime: AssignmentRuntime | None = getattr(state, "runtime", None)
    if runtime is None:
        raise DependencyUnavailable("the service is still connecting to its dependencies")
    experiment_id, user_id, k, cohort = parse_query(scope.get("query_string", b""))
    return await recommend(runtime, experiment_id, user_id, k, cohort)
