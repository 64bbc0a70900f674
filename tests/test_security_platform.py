"""The whole platform behind its public entry, seen by callers with each role and none.

One platform (six services and the entry, logging at DEBUG) serves the module:
every route of every service admits exactly the roles it declares, no token
or secret reaches a log line, exports neutralise formulas, and OpenAPI-driven
fuzzing of the public API (schemathesis, 127.0.0.1 only) meets no 5xx.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from cineamate.common.limits import OPERATIONS_PATHS
from cineamate.common.settings import SERVICE_NAMES, load_settings
from cineamate.stack.local import LocalStack
from cineamate.stack.routes import owner_of
from cineamate.stack.services import PROCESS_NAMES, load_service, port_variable
from cineamate.stack.testing import (
    ADMIN,
    CLIENT,
    READ,
    TEST_TOKENS,
    free_ports,
    provision,
    topic_environment,
    wait_for_status,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CREDENTIALS: dict[str, dict[str, str]] = {
    "none": {},
    "client": CLIENT,
    "read": READ,
    "admin": ADMIN,
}
# The access policy, stated independently of auth.py: which presented roles a required
# role admits (operators read too; clients only recommend and click).
GRANTED = {"admin": {"admin"}, "read": {"read", "admin"}, "client": {"client"}}
# A token nobody was given: it must not be logged either.
GUESSED_TOKEN = "guessed-token-" + uuid.uuid4().hex
FUZZ_MIN_REQUESTS = 1_000
FUZZ_TIME_LIMIT_SECONDS = 120.0
SLATE = 3


@dataclass
class Platform:
    env: dict[str, str]
    entry: str
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clients: list[httpx.Client] = field(default_factory=list)

    def http(self) -> httpx.Client:
        client = httpx.Client(base_url=self.entry, timeout=30)
        self.clients.append(client)
        return client

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable(service)]}"

    def running_experiment(self, http: httpx.Client) -> str:
        created = http.post("/api/experiments", json=_experiment_body(), headers=ADMIN)
        assert created.status_code == 201, created.text
        experiment_id: str = created.json()["id"]
        started = http.patch(
            f"/api/experiments/{experiment_id}", json={"status": "running"}, headers=ADMIN
        )
        assert started.status_code == 200, started.text
        return experiment_id


def _experiment_body() -> dict[str, Any]:
    return {
        "name": "security",
        "catalogue": list(range(1, 21)),
        "policies": [
            {"name": "ts", "type": "thompson"},
            {"name": "control", "type": "random", "control": True},
        ],
        "traffic": 1.0,
        "slate_size": SLATE,
    }


async def _create_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def platform(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Every service and the public entry, on a database and topics of their own."""
    database = "t_" + uuid.uuid4().hex[:12]
    asyncio.run(_create_database(stack.database_url, database))
    base, _, query = stack.database_url.partition("?")
    env = dict(os.environ) | stack.environment() | TEST_TOKENS | free_ports()
    env |= topic_environment(uuid.uuid4().hex[:8])
    env["DATABASE_URL"] = f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")
    env |= {"CINEAMATE_LOG_FORMAT": "json", "CINEAMATE_LOG_LEVEL": "DEBUG"}
    env["PYTHONUNBUFFERED"] = "1"
    for name in SERVICE_NAMES:
        env[f"CINEAMATE_{name.upper()}_URL"] = f"http://127.0.0.1:{env[port_variable(name)]}"
    logs = tmp_path_factory.mktemp("security-logs")
    env["CINEAMATE_ASSIGNMENT_SPOOL_DIR"] = str(logs / "spool")
    provision(env)
    platform = Platform(env, f"http://127.0.0.1:{env[port_variable('gateway')]}", logs)
    try:
        for name in PROCESS_NAMES:
            with (logs / f"{name}.log").open("wb") as log:
                platform.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "cineamate.cli", "serve", name],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        wait_for_status(f"{platform.entry}/readyz", timeout=180)
        yield platform
    finally:
        for client in platform.clients:
            client.close()
        for process in platform.processes:
            process.terminate()
        for process in platform.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@dataclass(frozen=True)
class RouteAccess:
    service: str
    method: str
    path: str
    role: str | None  # None: public
    has_body: bool


def _fastapi_app(app: Any) -> FastAPI:
    # A service may wrap its FastAPI app (the assignment's hot path does).
    while not isinstance(app, FastAPI):
        app = app._app
    return app


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # Included routers stay nested in FastAPI's routing table.
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(included.routes)


def _required_role(route: APIRoute) -> str | None:
    role = getattr(route.endpoint, "required_role", None)
    if role is not None:
        return str(role.value)
    for dependency in route.dependencies:
        name = getattr(dependency.dependency, "__name__", "")
        if name.startswith("require_"):
            return name.removeprefix("require_")
    return None


def public_routes(env: dict[str, str]) -> list[RouteAccess]:
    """Every route of every service that the public entry forwards to it, with its role."""
    found = []
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        for name in SERVICE_NAMES:
            service = load_service(name)
            app = _fastapi_app(service.create_app(load_settings(service.settings_class)))
            routes = list(_api_routes(app.routes))
            documented = set(app.openapi()["paths"])
            assert documented <= {route.path for route in routes}, f"{name}: routes missed"
            for route in routes:
                # The entry answers the operational paths itself.
                if owner_of(route.path) != name or route.path in OPERATIONS_PATHS:
                    assert not route.path.startswith("/api/"), (
                        f"{name} serves {route.path}, which the public entry does not forward "
                        "to it: add it to cineamate/stack/routes.py"
                    )
                    continue
                for method in sorted(route.methods):
                    found.append(
                        RouteAccess(
                            name, method, route.path, _required_role(route), bool(route.body_field)
                        )
                    )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return found


def test_every_route_admits_exactly_its_roles_through_the_entry(platform: Platform) -> None:
    routes = public_routes(platform.env)
    assert {r.service for r in routes} == set(SERVICE_NAMES) - {"reward"}
    http = platform.http()
    experiment_id = platform.running_experiment(http)
    doomed_id = platform.running_experiment(http)
    serve = http.get(
        "/api/movies/recommendations",
        params={"experiment_id": experiment_id, "user_id": "u1"},
        headers=CLIENT,
    ).json()
    # What a successful call of each route needs; a new route with a body or a new path
    # parameter fails here until it is given one.
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/experiments"): _experiment_body(),
        ("PATCH", "/api/experiments/{experiment_id}"): {"name": "renamed"},
        ("POST", "/api/events/clicks"): {
            "serve_id": serve["serve_id"],
            "movie_id": serve["items"][0]["movie_id"],
            "user_id": "u1",
        },
    }
    queries = {"/api/movies/recommendations": {"experiment_id": experiment_id, "user_id": "u2"}}
    parameters = {"experiment_id": experiment_id, "variant": "ts", "name": "dashboard.js"}
    table: list[str] = []
    mismatches: list[str] = []
    for route in routes:
        values = parameters | ({"experiment_id": doomed_id} if route.path.endswith("/stop") else {})
        path = route.path.format(**values)
        if route.has_body:
            assert (route.method, route.path) in bodies, f"give {route.method} {route.path} a body"
        for who, headers in CREDENTIALS.items():
            if route.role is None:
                expected = "2xx"
            elif who == "none":
                expected = "401"
            else:
                expected = "2xx" if who in GRANTED[route.role] else "403"
            answer = http.request(
                route.method,
                path,
                headers=headers,
                json=bodies.get((route.method, route.path)),
                params=queries.get(route.path),
            )
            actual = "2xx" if 200 <= answer.status_code < 300 else str(answer.status_code)
            table.append(f"{route.method:<6} {route.path:<56} {who:<7} {answer.status_code}")
            if actual != expected or answer.headers.get("x-cineamate-service") != route.service:
                mismatches.append(
                    f"{route.method} {route.path} as {who}: expected {expected} from "
                    f"{route.service}, got {answer.status_code} from "
                    f"{answer.headers.get('x-cineamate-service')}: {answer.text[:160]}"
                )
    print("\n".join(table))
    assert not mismatches, "\n".join(mismatches)


def test_no_token_or_secret_reaches_a_log_line(platform: Platform) -> None:
    http = platform.http()
    experiment_id = platform.running_experiment(http)
    guessed = {"Authorization": f"Bearer {GUESSED_TOKEN}"}
    for headers in (*CREDENTIALS.values(), guessed):
        http.get(
            "/api/movies/recommendations",
            params={"experiment_id": experiment_id, "user_id": "u1"},
            headers=headers,
        )
        http.get(f"/api/experiments/{experiment_id}/summary", headers=headers)
        http.post("/api/events/clicks", content=b"{not json", headers=headers)
        http.get("/api/experiments/missing", headers=headers)
    # Errors of every kind, and a service restarted with its secrets in the environment.
    http.post("/api/experiments", json={"name": ""}, headers=ADMIN)
    secrets = {f"token {name}": value for name, value in TEST_TOKENS.items()}
    secrets["guessed token"] = GUESSED_TOKEN
    for variable in ("DATABASE_URL", "REDIS_URL"):
        password = urlsplit(platform.env[variable]).password
        if password:
            secrets[f"{variable} password"] = password
    time.sleep(1.0)  # the last lines reach the files

    lines = [
        (log.name, line)
        for log in sorted(platform.logs.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
    ]
    assert len(lines) > 100, "the services log at DEBUG; too few lines to be a test"
    leaks = [
        f"{what} in {name}: {line[:200]}"
        for name, line in lines
        for what, secret in secrets.items()
        if secret in line
    ]
    assert not leaks, "\n".join(leaks)


def test_exported_cells_that_look_like_formulas_are_text(platform: Platform) -> None:
    http = platform.http()
    experiment_id = platform.running_experiment(http)
    users = ["=1+1", "+SUM(A1:A9)", "-2+3", "@cmd", "plain"]
    for user in users:
        answer = http.get(
            "/api/movies/recommendations",
            params={"experiment_id": experiment_id, "user_id": user},
            headers=CLIENT,
        )
        assert answer.status_code == 200, answer.text

    def exported() -> list[dict[str, str]] | None:
        answer = http.get(
            f"/api/experiments/{experiment_id}/export", params={"type": "serve"}, headers=READ
        )
        assert answer.status_code == 200, answer.text
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        return rows if len(rows) == len(users) else None

    rows = wait_until("the serves in the export", exported, timeout=60)
    assert sorted(row["user_id"] for row in rows) == sorted(
        ["'=1+1", "'+SUM(A1:A9)", "'-2+3", "'@cmd", "plain"]
    )


def public_schema(platform: Platform) -> dict[str, Any]:
    """The OpenAPI schema of the public API: each service's paths that the entry forwards
    to it, as the running services describe them."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "CineaMate public API", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": {}},
    }
    for name in SERVICE_NAMES:
        schema = httpx.get(f"{platform.url(name)}/openapi.json", timeout=10).json()
        for path, operations in schema["paths"].items():
            if owner_of(path) == name and path.startswith("/api/"):
                merged["paths"][path] = operations
        for model, definition in schema.get("components", {}).get("schemas", {}).items():
            known = merged["components"]["schemas"].setdefault(model, definition)
            assert known == definition, f"two services define the model {model} differently"
    return merged


def test_fuzzing_the_public_api_meets_no_server_error(platform: Platform) -> None:
    schema = schemathesis.openapi.from_dict(public_schema(platform))
    roles = {(r.method, r.path): r.role for r in public_routes(platform.env)}
    http = platform.http()
    experiment_id = platform.running_experiment(http)
    assert urlsplit(platform.entry).hostname == "127.0.0.1"
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.monotonic()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    rounds = 0
    while sum(statuses.values()) < FUZZ_MIN_REQUESTS:
        rounds += 1
        assert time.monotonic() - started < FUZZ_TIME_LIMIT_SECONDS, (
            f"only {sum(statuses.values())} requests in {FUZZ_TIME_LIMIT_SECONDS:g} s"
        )
        for operation in operations:
            role = roles[(operation.method.upper(), operation.path)]
            headers = CREDENTIALS["client" if role == "client" else "admin"]
            real = {"experiment_id": experiment_id} if "{experiment_id}" in operation.path else {}
            strategy = st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
                operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
            )
            _fuzz(strategy, platform.entry, headers, statuses, failures)
    elapsed = time.monotonic() - started
    print(
        f"fuzzing: {sum(statuses.values())} requests over {len(operations)} operations "
        f"in {rounds} round(s), {elapsed:.1f} s; statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n".join(failures[:20])


def _fuzz(
    strategy: st.SearchStrategy[schemathesis.Case],
    entry: str,
    headers: dict[str, str],
    statuses: Counter[int],
    failures: list[str],
) -> None:
    """Send the cases ``strategy`` generates to ``entry``, counting statuses; a 5xx is
    recorded with the command that repeats it."""

    @given(case=strategy)
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=entry, headers=headers, timeout=30)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{case.as_curl_command()}\n    {response.text[:300]}")

    call()
