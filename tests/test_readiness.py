"""A service whose dependency is down stays up, says why on /readyz, and recovers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cineamate.stack.embedded import EmbeddedRedis
from cineamate.stack.processes import free_port
from cineamate.stack.testing import wait_for_status

pytestmark = pytest.mark.integration


def test_unreachable_redis_is_reported_then_recovered(isolated_env, tmp_path: Path) -> None:
    redis_port = free_port()
    env = dict(isolated_env) | {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    readyz = f"http://127.0.0.1:{env['CINEAMATE_POLICY_PORT']}/readyz"
    service = subprocess.Popen(
        [sys.executable, "-m", "cineamate.cli", "serve", "policy"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        answer = wait_for_status(readyz, 503, timeout=30)
        checks = answer.json()["checks"]
        assert checks["redis"].startswith("connecting")
        assert checks["postgres"] == "ok"
        assert checks["kafka"] == "ok"
        time.sleep(2)
        assert service.poll() is None, "the service must not exit while a dependency is down"
        assert httpx.get(readyz.replace("readyz", "healthz"), timeout=3).status_code == 200

        with EmbeddedRedis(tmp_path / "redis", port=redis_port, durable=False):
            answer = wait_for_status(readyz, 200, timeout=30)
            assert answer.json()["checks"]["redis"] == "ok"
            # Once connected, losing the server again shows on the next check.
        lost = wait_for_status(readyz, 503, timeout=10)
        assert lost.json()["checks"]["redis"] != "ok"
    finally:
        service.terminate()
        service.wait(timeout=30)
