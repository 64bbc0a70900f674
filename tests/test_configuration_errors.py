"""Bad configuration: one line naming the variable, exit code 2."""

from __future__ import annotations

import os
import subprocess

import pytest

from cineamate.stack.testing import run_cli


def _serve(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "serve", service, timeout=60)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEAMATE_")}
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
        env.pop(variable, None)
    return env


def test_missing_database_url_is_one_line_naming_it() -> None:
    env = _clean_env() | {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://x"}
    result = _serve("decision", env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "DATABASE_URL is not set" in lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CINEAMATE_POLICY_PORT", "not-a-port"), ("CINEAMATE_LOG_LEVEL", "LOUD")],
)
def test_invalid_value_names_the_variable(variable: str, value: str) -> None:
    env = _clean_env() | {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1",
        variable: value,
    }
    result = _serve("policy", env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert variable in result.stderr


def test_run_rejects_a_malformed_port_variable() -> None:
    env = _clean_env() | {"CINEAMATE_ANALYTICS_PORT": "eighty"}
    result = run_cli(env, "run", timeout=60)
    assert result.returncode == 2
    assert "CINEAMATE_ANALYTICS_PORT" in result.stderr
