"""``cineamate run`` in a temporary home, for the benchmarks that need the whole platform.

The platform starts as a user would start it (its own processes, embedded broker,
PostgreSQL and Redis), on free ports, logging at WARNING and without the demo,
so nothing but the benchmark's own load runs on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from cineamate.stack.processes import free_port, spawn, stop_process
from cineamate.stack.services import PROCESS_NAMES, port_variable
from cineamate.stack.testing import wait_for_status

__all__ = [
    "BARE_APP",
    "Platform",
    "PlatformFailed",
    "create_running_experiment",
    "make_home",
    "platform_env",
    "start_bare_app",
    "start_platform",
    "stop_platform",
]

READY_TIMEOUT_SECONDS = 180.0
READY_POLL_SECONDS = 0.05

# The same-run baseline: what one uvicorn worker with this stack serves with no work to do.
BARE_APP = """
import sys

import orjson
import uvicorn
from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/bench")
async def bench(user_id: str) -> Response:
    body = {"user_id": user_id, "items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
    return Response(orjson.dumps(body), media_type="application/json")


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            workers=1, access_log=False, log_level="warning", server_header=False)
"""


class PlatformFailed(RuntimeError):
    """The platform did not start, or did not serve the experiment as set up."""


@dataclass
class Platform:
    """``cineamate run`` in a temporary home, and what the benchmark needs to reach it."""

    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int]
    admin_token: str = ""
    client_key: str = ""
    redis_url: str = ""
    # Seconds from the spawn of ``cineamate run`` to the public entry's first 200 on /readyz.
    ready_seconds: float = 0.0

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-3_000:].strip() or "(empty log)"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise PlatformFailed(
                f"cineamate run exited ({self.process.returncode}): {self.log_tail()}"
            )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def make_home(name: str) -> Path:
    """A new temporary folder for a platform; the caller removes it."""
    home = Path(tempfile.mkdtemp(prefix=f"cineamate-bench-{name}-"))
    # Embedded PostgreSQL runs as an unprivileged user under root and must reach this folder.
    home.chmod(0o755)
    return home


def platform_env(home: Path) -> tuple[dict[str, str], dict[str, int]]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CINEAMATE_")
        and name not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
    }
    ports = {name: free_port() for name in PROCESS_NAMES}
    for name, port in ports.items():
        env[port_variable(name)] = str(port)
    env["CINEAMATE_HOME"] = str(home)
    env["CINEAMATE_LOG_LEVEL"] = "WARNING"
    # The demo's experiment and load would share the machine with the measured steps.
    env["CINEAMATE_DEMO"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env, ports


def start_platform(home: Path) -> Platform:
    env, ports = platform_env(home)
    log_path = home / "run.log"
    started = time.monotonic()
    with open(log_path, "ab") as log:
        process = spawn([sys.executable, "-m", "cineamate.cli", "run"], log=log, env=env)
    platform = Platform(home, process, log_path, ports)
    deadline = started + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        platform.check_alive()
        try:
            if httpx.get(f"{platform.url('gateway')}/readyz", timeout=2).status_code == 200:
                platform.ready_seconds = time.monotonic() - started
                break
        except httpx.HTTPError:
            pass
        time.sleep(READY_POLL_SECONDS)
    else:
        raise PlatformFailed(f"not ready in {READY_TIMEOUT_SECONDS:g} s: {platform.log_tail()}")
    tokens = dict(
        line.split("=", 1) for line in (home / "tokens.env").read_text().splitlines() if line
    )
    platform.admin_token = tokens["CINEAMATE_ADMIN_TOKEN"]
    platform.client_key = tokens["CINEAMATE_CLIENT_KEY"]
    platform.redis_url = json.loads((home / "run.json").read_text())["stores"]["REDIS_URL"]
    return platform


def start_bare_app(home: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The same-run baseline app in a process of its own, once it answers ``/bench``."""
    port = free_port()
    with open(home / "baseline.log", "ab") as log:
        process = spawn([sys.executable, "-c", BARE_APP, str(port)], log=log)
    wait_for_status(f"http://127.0.0.1:{port}/bench?user_id=u1", timeout=30, process=process)
    return process, port


def stop_platform(platform: Platform) -> list[str]:
    """SIGINT and wait, as Ctrl-C would; what outlived it is killed and named."""
    try:
        family = psutil.Process(platform.process.pid).children(recursive=True)
    except psutil.Error:
        family = []
    stop_process(platform.process, sig=signal.SIGINT, timeout=90)
    _, alive = psutil.wait_procs(family, timeout=10)
    leftovers = []
    for process in alive:
        try:
            leftovers.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
            process.kill()
        except psutil.Error:
            continue
    return leftovers


def create_running_experiment(platform: Platform, body: dict[str, Any]) -> str:
    """Through the public entry, as an operator would: create, then start."""
    headers = {"Authorization": f"Bearer {platform.admin_token}"}
    with httpx.Client(base_url=platform.url("gateway"), headers=headers, timeout=30) as client:
        created = client.post("/api/experiments", json=body)
        if created.status_code != 201:
            raise PlatformFailed(f"create answered {created.status_code}: {created.text[:500]}")
        experiment_id: str = created.json()["id"]
        started = client.patch(f"/api/experiments/{experiment_id}", json={"status": "running"})
        if started.status_code != 200:
            raise PlatformFailed(f"start answered {started.status_code}: {started.text[:500]}")
    return experiment_id
