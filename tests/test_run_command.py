"""``cineamate run``: every process ready, routed, supervised, and nothing left after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from cineamate.common.settings import SERVICE_NAMES
from cineamate.stack.testing import ADMIN, run_cli, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READY_WITHIN_SECONDS = 30


def _platform_processes(root: psutil.Process) -> list[psutil.Process]:
    return [root, *root.children(recursive=True)]


def test_run_starts_everything_and_ctrl_c_leaves_nothing(tmp_path: Path, isolated_env) -> None:
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"cineamate-run-{os.getpid()}-{time.time_ns()}"
    home.mkdir(mode=0o755)
    env = dict(isolated_env)
    env["CINEAMATE_HOME"] = str(home)
    # The embedded default: no external servers.
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
        env.pop(variable, None)
    ports = {
        name: int(env[f"CINEAMATE_{name.upper()}_PORT"]) for name in (*SERVICE_NAMES, "gateway")
    }
    log = (tmp_path / "run.log").open("wb")
    started = time.monotonic()
    platform = subprocess.Popen(
        [sys.executable, "-m", "cineamate.cli", "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_status(f"http://127.0.0.1:{ports['gateway']}/readyz", timeout=READY_WITHIN_SECONDS)
        print(f"platform ready after {time.monotonic() - started:.1f} s")
        for name in SERVICE_NAMES:
            answer = httpx.get(f"http://127.0.0.1:{ports[name]}/readyz", timeout=2)
            assert answer.status_code == 200, (name, answer.text)
            assert set(answer.json()["checks"]) >= {"kafka", "postgres"}
            metrics = httpx.get(f"http://127.0.0.1:{ports[name]}/metrics", timeout=2)
            assert "cineamate_dependency_up" in metrics.text

        entry = f"http://127.0.0.1:{ports['gateway']}"
        owners = {
            "/api/experiments/e1/summary": "analytics",
            "/api/experiments/e1/decision": "decision",
            "/api/experiments/e1/guardrails": "guardrails",
            "/api/experiments/e1/policies/thompson/state": "policy",
            "/api/experiments": "assignment",
            "/api/movies/recommendations": "assignment",
        }
        for path, owner in owners.items():
            answer = httpx.get(entry + path, timeout=5)
            assert answer.headers.get("x-cineamate-service") == owner, path

        # Bodies travel through the entry in both directions.
        created = httpx.post(
            f"{entry}/api/experiments",
            headers=ADMIN,
            json={
                "name": "through the entry",
                "catalogue": [1, 2, 3],
                "policies": [
                    {"name": "ts", "type": "thompson"},
                    {"name": "control", "type": "random", "control": True},
                ],
            },
            timeout=10,
        )
        assert created.status_code == 201, created.text
        assert created.headers["x-cineamate-service"] == "assignment"
        assert created.json()["policies"][0]["name"] == "ts"

        run_file = json.loads((home / "run.json").read_text())
        assert run_file["entry"] == entry
        processes = _platform_processes(psutil.Process(platform.pid))
        # Six services, the entry, and the three embedded servers (PostgreSQL has helpers).
        assert len(processes) >= 11
        # Off the request path, the services yield the CPU to those answering requests.
        base = psutil.Process(platform.pid).nice()
        niceness = {
            p.cmdline()[-1]: p.nice() - base for p in processes if p.cmdline()[-2:-1] == ["serve"]
        }
        assert niceness == {
            name: 0 if name in ("assignment", "gateway") else 5
            for name in (*SERVICE_NAMES, "gateway")
        }
        # So do the embedded PostgreSQL (every backend) and Redis; the broker takes the
        # serve events of the request path and keeps its priority.
        stores: dict[str, set[int]] = {}
        for process in processes:
            if process.name() in ("postgres", "redis-server", "tansu"):
                stores.setdefault(process.name(), set()).add(process.nice() - base)
        assert stores == {"postgres": {5}, "redis-server": {5}, "tansu": {0}}

        # A crashed service is restarted by the supervisor.
        victim = psutil.Process(
            next(p.pid for p in processes if p.cmdline()[-2:] == ["serve", "decision"])
        )
        victim.kill()
        victim.wait(10)
        wait_for_status(f"http://127.0.0.1:{ports['decision']}/readyz", timeout=30)

        processes = _platform_processes(psutil.Process(platform.pid))
        platform.send_signal(signal.SIGINT)
        assert platform.wait(timeout=60) == 0
    finally:
        if platform.poll() is None:
            platform.kill()
        log.close()

    survivors = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], [p.cmdline() for p in survivors]
    assert not (home / "run.json").exists()
    output = (tmp_path / "run.log").read_text()
    assert "ready in" in output
    assert "decision   | exited with code" in output


def test_run_refuses_a_port_in_use(isolated_env) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(isolated_env) | {"CINEAMATE_GATEWAY_PORT": str(port)}
        result = run_cli(env, "run", timeout=60)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert "CINEAMATE_GATEWAY_PORT" in result.stderr
