"""Request limits of every service app: body size (413), CORS origins, rate (429), and the
constant-time token comparison the rate key relies on.

The app is driven in-process through httpx's ASGI transport; nothing is contacted.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request

from cineamate.common import auth
from cineamate.common.app import create_service_app
from cineamate.common.auth import Role, TokenChecker
from cineamate.common.limits import TokenBuckets
from cineamate.common.settings import load_settings
from cineamate.decision import DecisionSettings

ADMIN = {"Authorization": "Bearer admin-token-43"}
READ = {"Authorization": "Bearer read-token-44"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_admits_its_burst_then_one_request_per_refill() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0, "each key has a bucket of its own"
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 60
    assert [buckets.take("a") for _ in range(4)][-1] > 0, "refills stop at the burst"


def test_idle_buckets_are_forgotten_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=10.0, burst=5, clock=clock, max_keys=100)
    for round_ in range(20):
        for address in range(100):
            buckets.take(f"10.0.{round_}.{address}")
        clock.now += 1.0
    assert len(buckets) <= 200


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @router.get("/things")
    async def things() -> dict[str, str]:
        return {"status": "ok"}

    return router


@pytest.fixture
def limited_env(service_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    service_env.setenv("CINEAMATE_MAX_REQUEST_BYTES", "1000")
    service_env.setenv("CINEAMATE_CORS_ORIGINS", "https://dash.example.org, https://b.example.org/")
    service_env.setenv("CINEAMATE_RATE_LIMIT_PER_SECOND", "1")
    service_env.setenv("CINEAMATE_RATE_LIMIT_BURST", "3")
    return service_env


@pytest.fixture
def app(limited_env: pytest.MonkeyPatch) -> FastAPI:
    return create_service_app(
        name="decision",
        settings=load_settings(DecisionSettings),
        dependencies=[],
        routers=[_router()],
    )


async def test_a_body_above_the_limit_is_413_naming_the_limit(
    client: httpx.AsyncClient,
) -> None:
    fits = await client.post("/echo", content=b"x" * 1000, headers=ADMIN)
    assert fits.status_code == 200, fits.text
    assert fits.json() == {"received": 1000}

    announced = await client.post("/echo", content=b"x" * 1001, headers=READ)
    assert announced.status_code == 413
    assert announced.json()["error"]["code"] == "too_large.body"
    assert "1000 bytes" in announced.json()["error"]["message"]
    assert announced.headers["x-cineamate-service"] == "decision"


async def test_a_nul_character_in_a_query_parameter_is_422_naming_it(
    client: httpx.AsyncClient,
) -> None:
    # PostgreSQL text cannot hold NUL: without this a filter reaching a query was a 500.
    answer = await client.get("/things?variant=a%00b&limit=3", headers=READ)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid.input"
    assert answer.json()["error"]["field"] == "query.variant"
    plain = await client.get("/things?variant=a%2500b", headers=READ)
    assert plain.status_code == 200, plain.text


async def test_a_chunked_body_is_cut_off_at_the_limit(app: FastAPI) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 400

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.post("/echo", content=chunks(), headers=ADMIN)
    assert answer.status_code == 413, answer.text
    assert "1000 bytes" in answer.json()["error"]["message"]


async def test_only_configured_origins_get_cors_headers(client: httpx.AsyncClient) -> None:
    allowed = await client.get("/things", headers={"origin": "https://b.example.org"} | ADMIN)
    assert allowed.headers["access-control-allow-origin"] == "https://b.example.org"
    assert "origin" in allowed.headers["vary"].lower()

    other = await client.get("/things", headers={"origin": "https://evil.example"} | READ)
    assert other.status_code == 200
    assert not any(name.startswith("access-control-") for name in other.headers)

    preflight = {"access-control-request-method": "POST"}
    granted = await client.options(
        "/echo", headers=preflight | {"origin": "https://dash.example.org"}
    )
    assert granted.status_code == 204
    assert granted.headers["access-control-allow-origin"] == "https://dash.example.org"
    assert "authorization" in granted.headers["access-control-allow-headers"]
    assert "POST" in granted.headers["access-control-allow-methods"]

    refused = await client.options("/echo", headers=preflight | {"origin": "https://evil.example"})
    assert refused.status_code == 403
    assert not any(name.startswith("access-control-") for name in refused.headers)


async def test_no_origin_is_allowed_by_default(
    service_env: pytest.MonkeyPatch,
) -> None:
    app = create_service_app(
        name="decision", settings=load_settings(DecisionSettings), dependencies=[]
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        preflight = await client.options(
            "/healthz",
            headers={"origin": "http://127.0.0.1:3000", "access-control-request-method": "GET"},
        )
        answer = await client.get("/api/anything", headers={"origin": "http://127.0.0.1:3000"})
    assert not any(name.startswith("access-control-") for name in answer.headers)
    assert not any(name.startswith("access-control-") for name in preflight.headers)


async def test_a_client_above_its_rate_gets_429_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    answers = [await client.get("/things", headers=ADMIN) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "1"
    # Another token has a bucket of its own; probes are never limited.
    assert (await client.get("/things", headers=READ)).status_code == 200
    assert all([(await client.get("/healthz")).status_code == 200 for _ in range(10)])


async def test_unknown_tokens_share_their_address_bucket(client: httpx.AsyncClient) -> None:
    statuses = [
        (await client.get("/things", headers={"Authorization": f"Bearer made-up-{i}"})).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


@pytest.fixture
def compare_digest_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bytes, bytes]]]:
    calls: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(presented: bytes, expected: bytes) -> bool:
        calls.append((presented, expected))
        return compare_digest(presented, expected)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    yield calls


@pytest.mark.parametrize(
    ("presented", "role"),
    [
        ("admin-token-43", Role.ADMIN),
        ("client-key-45", Role.CLIENT),
        ("read-token-4", None),
        ("", None),
    ],
)
def test_tokens_are_compared_in_constant_time_against_every_token(
    service_env: pytest.MonkeyPatch,
    compare_digest_calls: list[tuple[bytes, bytes]],
    presented: str,
    role: Role | None,
) -> None:
    checker = TokenChecker(load_settings(DecisionSettings))
    assert checker.role_of(presented) == role
    # One constant-time comparison per configured token, whichever matched (or none), so
    # neither the match nor its position shows in the time taken.
    assert sorted(expected for _, expected in compare_digest_calls) == [
        b"admin-token-43",
        b"client-key-45",
        b"read-token-44",
    ]
    assert {given for given, _ in compare_digest_calls} == {presented.encode()}
