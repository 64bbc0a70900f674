"""Fixtures of the assignment service's tests: the service run as a process of its own,
against the session's servers (or a broker a test starts itself)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cineamate.stack.testing import ADMIN, CLIENT, run_cli

DEFAULT_CATALOGUE = list(range(1, 31))
_READY_TIMEOUT = 60.0


def _experiment_body(**overrides: Any) -> dict[str, Any]:
    """A valid ``POST /api/experiments`` body: a control and a Thompson variant (1:3)."""
    body: dict[str, Any] = {
        "name": "assignment test",
        "catalogue": DEFAULT_CATALOGUE,
        "policies": [
            {"name": "control", "type": "random", "control": True},
            {"name": "ts", "type": "thompson", "weight": 3.0},
        ],
        "traffic": 1.0,
        "slate_size": 5,
    }
    return body | overrides


@dataclass
class AssignmentProcess:
    """One running assignment service and an HTTP client for it."""

    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0)

    @property
    def port(self) -> int:
        return int(self.env["CINEAMATE_ASSIGNMENT_PORT"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def experiment_body(**overrides: Any) -> dict[str, Any]:
        return _experiment_body(**overrides)

    def create_experiment(self, **overrides: Any) -> dict[str, Any]:
        answer = self.http.post(
            "/api/experiments", json=self.experiment_body(**overrides), headers=ADMIN
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def set_status(self, experiment_id: str, status: str) -> dict[str, Any]:
        answer = self.http.patch(
            f"/api/experiments/{experiment_id}", json={"status": status}, headers=ADMIN
        )
        assert answer.status_code == 200, answer.text
        changed: dict[str, Any] = answer.json()
        return changed

    def recommend(self, experiment_id: str, user_id: str, **params: Any) -> httpx.Response:
        query = {"experiment_id": experiment_id, "user_id": user_id} | params
        return self.http.get("/api/movies/recommendations", params=query, headers=CLIENT)

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled metric on ``/metrics``."""
        for line in self.http.get("/metrics").text.splitlines():
            metric, _, value = line.partition(" ")
            if metric == name:
                return float(value)
        return None

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        reason = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"assignment exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                answer = self.http.get("/readyz", timeout=2.0)
                if answer.status_code == 200:
                    return
                reason = answer.text
            except httpx.HTTPError as exc:
                reason = repr(exc)
            time.sleep(0.1)
        raise AssertionError(f"assignment not ready after {timeout:g} s: {reason}")

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _run_cineamate(env: dict[str, str], *args: str) -> str:
    done = run_cli(env, *args)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"cineamate {' '.join(args)} failed:\n{output}"
    return output


CineamateCommand = Callable[..., str]
Launcher = Callable[[dict[str, str]], AssignmentProcess]


@pytest.fixture
def cineamate() -> CineamateCommand:
    """Runs ``cineamate ARGS`` with an environment to completion; fails the test if it fails."""
    return _run_cineamate


@pytest.fixture
def launch_assignment(tmp_path: Path) -> Iterator[Launcher]:
    """Starts an assignment service with an environment (a spool in ``tmp_path`` unless it
    names one) and waits until it is ready; stops every one it started after the test."""
    started: list[AssignmentProcess] = []

    def launch(env: dict[str, str]) -> AssignmentProcess:
        index = len(started)
        env = {"CINEAMATE_ASSIGNMENT_SPOOL_DIR": str(tmp_path / f"spool-{index}")} | env
        log = tmp_path / f"assignment-{index}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "cineamate.cli", "serve", "assignment"],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        service = AssignmentProcess(env, process, log)
        started.append(service)
        service.wait_ready()
        return service

    try:
        yield launch
    finally:
        for service in reversed(started):
            service.stop()


@pytest.fixture
def assignment_env(isolated_env: dict[str, str], cineamate: CineamateCommand) -> dict[str, str]:
    """The isolated environment, migrated and with its topics created."""
    cineamate(isolated_env, "migrate")
    cineamate(isolated_env, "topics")
    return isolated_env


@pytest.fixture
def assignment(assignment_env: dict[str, str], launch_assignment: Launcher) -> AssignmentProcess:
    """One ready assignment service on the session's servers."""
    return launch_assignment(assignment_env)
