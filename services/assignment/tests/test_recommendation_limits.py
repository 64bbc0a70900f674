"""The recommendation hot path, served outside FastAPI's middleware, applies the same rate
limit and CORS policy as every other route, at a cost of about a microsecond a request.

The app is driven in-process; its runtime is never built, so an admitted request is
answered 503 (still connecting) and nothing is contacted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from cineamate.assignment import AssignmentSettings, create_app
from cineamate.common.auth import Role
from cineamate.common.limits import LimitPolicy
from cineamate.common.settings import load_settings

CLIENT = {"Authorization": "Bearer client-key"}
PATH = "/api/movies/recommendations?experiment_id=e1&user_id=u1"
BENCHMARK_REQUESTS = 200_000


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> AssignmentSettings:  # type: ignore[no-untyped-def]
    for variable, value in {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "CINEAMATE_ADMIN_TOKEN": "admin-token",
        "CINEAMATE_READ_TOKEN": "read-token",
        "CINEAMATE_CLIENT_KEY": "client-key",
        "CINEAMATE_ASSIGNMENT_SPOOL_DIR": str(tmp_path),
        "CINEAMATE_RATE_LIMIT_PER_SECOND": "0.5",
        "CINEAMATE_RATE_LIMIT_BURST": "2",
        "CINEAMATE_CORS_ORIGINS": "https://shop.example.org",
    }.items():
        monkeypatch.setenv(variable, value)
    return load_settings(AssignmentSettings)


@pytest.fixture
async def client(settings: AssignmentSettings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_the_hot_path_limits_each_client_token(client: httpx.AsyncClient) -> None:
    answers = [await client.get(PATH, headers=CLIENT) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 429]
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert answers[-1].headers["retry-after"] == "2"
    assert answers[-1].headers["x-cineamate-service"] == "assignment"
    # Credentials are still checked first: a wrong token is 401, not counted.
    assert (await client.get(PATH)).status_code == 401


async def test_the_hot_path_answers_allowed_origins_only(client: httpx.AsyncClient) -> None:
    allowed = await client.get(PATH, headers=CLIENT | {"origin": "https://shop.example.org"})
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example.org"
    other = await client.get(PATH, headers=CLIENT | {"origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_the_limit_costs_the_hot_path_about_a_microsecond(
    settings: AssignmentSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CINEAMATE_RATE_LIMIT_PER_SECOND", "1e9")
    monkeypatch.setenv("CINEAMATE_RATE_LIMIT_BURST", "1000000000")
    app = create_app(load_settings(AssignmentSettings))
    policy: LimitPolicy = app._limits  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "client": ("10.1.2.3", 50000),
        "headers": [(b"host", b"t"), (b"authorization", b"Bearer client-key")],
    }
    started = time.perf_counter()
    for _ in range(BENCHMARK_REQUESTS):
        policy.admit(scope, Role.CLIENT)
        policy.cors_headers(scope)
    per_request_us = (time.perf_counter() - started) / BENCHMARK_REQUESTS * 1e6
    print(f"rate limit and CORS check on the hot path: {per_request_us:.2f} us a request")
    # Measured 1.4 to 2.5 us on the reference machine under load; the bound leaves room
    # for a loaded CI runner.
    assert per_request_us < 10
