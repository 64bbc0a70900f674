"""The test harness's ``start_service`` survives a free port that another process took."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from cineamate.stack.testing import start_service, stop_service

pytestmark = pytest.mark.integration


def test_a_taken_port_is_replaced_and_the_service_owns_its_new_one(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = isolated_env | {"CINEAMATE_DECISION_PORT": port}
        service = start_service(env, "decision", tmp_path)
        try:
            moved = env["CINEAMATE_DECISION_PORT"]
            answer = httpx.get(f"http://127.0.0.1:{moved}/readyz", timeout=5)
        finally:
            stop_service(service)

    assert moved != port
    assert answer.status_code == 200
    assert any("is in use" in log.read_text() for log in tmp_path.glob("decision-*.log"))
