"""``cineamate run`` on the embedded default: the demo learns within a minute; DEMO=0 is quiet."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from cineamate.stack.demo import DEMO_EXPERIMENT_NAME, SYNTHETIC_DATASET
from cineamate.stack.testing import ADMIN, READ, wait_for_status, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READY_WITHIN_SECONDS = 30
# From ready to the first posterior update: generating the data set (first start), the
# catalogue, the experiment, a 10 s reward window, and the learner's batch.
LEARNING_WITHIN_SECONDS = 60


@contextmanager
def _platform(tmp_path: Path, isolated_env: dict[str, str], **extra: str) -> Iterator[Any]:
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"cineamate-demo-{os.getpid()}-{time.time_ns()}"
    home.mkdir(mode=0o755)
    env = dict(isolated_env)
    env.pop("CINEAMATE_DEMO", None)
    env |= {"CINEAMATE_HOME": str(home), **extra}
    # The embedded default: no external servers.
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
        env.pop(variable, None)
    entry = f"http://127.0.0.1:{env['CINEAMATE_GATEWAY_PORT']}"
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        platform = subprocess.Popen(
            [sys.executable, "-m", "cineamate.cli", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_status(f"{entry}/readyz", timeout=READY_WITHIN_SECONDS, process=platform)
            yield entry, home, log_path
            platform.send_signal(signal.SIGINT)
            assert platform.wait(timeout=60) == 0
        finally:
            if platform.poll() is None:
                platform.kill()
                platform.wait(10)


def _experiments(entry: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{entry}/api/experiments", headers=ADMIN, timeout=5)
    assert answer.status_code == 200, answer.text
    experiments: list[dict[str, Any]] = answer.json()
    return experiments


def _learnt(entry: str, experiment_id: str) -> dict[str, float] | None:
    """Per variant, the rewards applied, once every variant has had some and one a click."""
    applied = {}
    for variant in ("thompson", "egreedy", "ucb1", "control"):
        answer = httpx.get(
            f"{entry}/api/experiments/{experiment_id}/policies/{variant}/state",
            params={"limit": 1},
            headers=READ,
            timeout=5,
        )
        if answer.status_code != 200 or answer.json()["version"] < 1:
            return None
        applied[variant] = answer.json()["total_successes"]
    return applied if sum(applied.values()) > 0 else None


def test_demo_creates_an_experiment_that_serves_and_learns_within_a_minute(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    with _platform(tmp_path, isolated_env) as (entry, home, log_path):
        ready = time.monotonic()
        # The demo creates its experiment, then starts it: wait for both.
        demo = wait_until(
            "the demo experiment, running",
            lambda: (
                found
                if (found := [e for e in _experiments(entry) if e["name"] == DEMO_EXPERIMENT_NAME])
                and all(e["status"] == "running" for e in found)
                else None
            ),
            timeout=LEARNING_WITHIN_SECONDS,
        )
        assert len(demo) == 1 and demo[0]["status"] == "running"
        assert {p["type"] for p in demo[0]["policies"]} == {"thompson", "egreedy", "ucb1", "random"}
        experiment_id = demo[0]["id"]
        successes = wait_until(
            "rewards in every variant's posterior",
            lambda: _learnt(entry, experiment_id),
            timeout=LEARNING_WITHIN_SECONDS - (time.monotonic() - ready),
        )
        print(f"learning {time.monotonic() - ready:.1f} s after ready: {successes}")
        # The dashboard shows the serves too: analytics, off the request path and niced,
        # may still be joining its group when the learner already has rewards.
        served = wait_until(
            "serves in the dashboard's summary",
            lambda: _summary(entry, experiment_id)["totals"]["serves"],
            timeout=LEARNING_WITHIN_SECONDS - (time.monotonic() - ready),
        )
        assert served > 0
        assert (home / "datasets" / SYNTHETIC_DATASET).is_dir()
    output = log_path.read_text()
    assert re.search(r"^demo +\| .* driven at 5 requests/s", output, re.MULTILINE)
    assert "demo stopped" not in output


def _summary(entry: str, experiment_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{entry}/api/experiments/{experiment_id}/summary", headers=READ, timeout=5)
    answer.raise_for_status()
    return cast(dict[str, Any], answer.json())


def test_demo_off_creates_nothing(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    with _platform(tmp_path, isolated_env, CINEAMATE_DEMO="0") as (entry, home, log_path):
        time.sleep(10)
        assert _experiments(entry) == []
        assert not (home / "datasets").exists()
    assert not re.search(r"^demo +\|", log_path.read_text(), re.MULTILINE)
