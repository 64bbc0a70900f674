"""The public entry's request limits, with tight settings, in front of a real service:
bodies above the size limit are 413, only configured origins get CORS headers (once),
and a client above its rate is 429 with Retry-After."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cineamate.stack.services import port_variable
from cineamate.stack.testing import (
    CLIENT,
    READ,
    provision,
    start_service,
    stop_service,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORIGIN = "https://dashboard.example.org"
MAX_BYTES = 20_000
BURST = 8


@pytest.fixture
def entry(isolated_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    env = isolated_env | {
        "CINEAMATE_MAX_REQUEST_BYTES": str(MAX_BYTES),
        "CINEAMATE_CORS_ORIGINS": ORIGIN,
        "CINEAMATE_RATE_LIMIT_PER_SECOND": "0.2",
        "CINEAMATE_RATE_LIMIT_BURST": str(BURST),
        "CINEAMATE_ASSIGNMENT_SPOOL_DIR": str(tmp_path / "spool"),
        "CINEAMATE_ASSIGNMENT_URL": f"http://127.0.0.1:{isolated_env['CINEAMATE_ASSIGNMENT_PORT']}",
    }
    provision(env)
    service = start_service(env, "assignment", tmp_path)
    with (tmp_path / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "cineamate.cli", "serve", "gateway"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{env[port_variable('gateway')]}"
    try:
        # Its /readyz waits for all six services; this test runs only the assignment.
        wait_for_status(f"{url}/healthz", process=gateway, timeout=60)
        yield url
    finally:
        stop_service(gateway)
        stop_service(service)


def test_the_entry_applies_size_cors_and_rate_limits(entry: str) -> None:
    with httpx.Client(base_url=entry, timeout=10) as http:
        clicks = [{"serve_id": f"s{i:06d}", "movie_id": 1, "user_id": "u"} for i in range(400)]
        too_large = http.post("/api/events/clicks", json=clicks, headers=CLIENT)
        assert too_large.status_code == 413, too_large.text
        assert f"{MAX_BYTES} bytes" in too_large.json()["error"]["message"]
        assert "x-cineamate-service" not in too_large.headers, "the entry refused it itself"

        preflight = {"access-control-request-method": "GET"}
        granted = http.options("/api/experiments", headers=preflight | {"origin": ORIGIN})
        assert granted.status_code == 204
        assert granted.headers.get_list("access-control-allow-origin") == [ORIGIN]
        refused = http.options(
            "/api/experiments", headers=preflight | {"origin": "https://other.example"}
        )
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers

        listed = http.get("/api/experiments", headers=READ | {"origin": ORIGIN})
        assert listed.status_code == 200, listed.text
        # The service answers with the same policy; the entry keeps one copy of the header.
        assert listed.headers.get_list("access-control-allow-origin") == [ORIGIN]
        assert listed.headers["x-cineamate-service"] == "assignment"
        elsewhere = http.get("/api/experiments", headers=READ | {"origin": "https://x.example"})
        assert "access-control-allow-origin" not in elsewhere.headers

        # The read token has used 2 of its burst; the rest go, and then it is limited.
        statuses = [http.get("/api/experiments", headers=READ).status_code for _ in range(BURST)]
        assert statuses == [200] * (BURST - 2) + [429, 429], statuses
        limited = http.get("/api/experiments", headers=READ)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 5
        # Another client (the client key) is not affected; probes never are.
        assert http.get("/api/experiments", headers=CLIENT).status_code == 403
        assert http.get("/healthz").status_code == 200
