"""The Dockerfile, read statically (no Docker engine here): stages, user, lock file, entry point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "apt-get install")


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def test_the_image_is_built_in_stages_from_a_slim_python() -> None:
    stages = _stages()
    assert len(stages) >= 2
    arguments = dict(
        rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest
    )
    for stage in stages:
        base = stage[0][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], base)
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base


def test_dependencies_are_installed_from_the_lock_file() -> None:
    installs = [
        rest for keyword, rest in _instructions() if keyword == "RUN" and "pip install" in rest
    ]
    assert installs
    for install in installs:
        assert re.search(r"(--constraint|-c) constraints\.txt", install), install
    copied = " ".join(rest for keyword, rest in _instructions() if keyword == "COPY")
    assert "constraints.txt" in copied


def test_the_final_stage_has_no_build_tools_and_runs_as_a_user() -> None:
    final = _stages()[-1]
    for keyword, rest in final:
        if keyword == "RUN":
            assert not any(tool in rest for tool in BUILD_TOOLS), rest
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric user lets Kubernetes check runAsNonRoot"
    assert any(keyword == "COPY" and "--from=" in rest for keyword, rest in final)


def test_the_entry_point_is_the_cineamate_command() -> None:
    final = _stages()[-1]
    (entry,) = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert entry == '["cineamate"]'


def _ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("path", [".venv", ".git", ".cineamate", "tests", "bench", "docs"])
def test_the_build_context_leaves_out_what_the_image_does_not_need(path: str) -> None:
    patterns = _ignore_patterns()
    assert patterns[0] == "**", "the context is an allowlist"
    assert f"!{path}" not in patterns and f"!{path}/" not in patterns


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    patterns = set(_ignore_patterns())
    for keyword, rest in _instructions():
        if keyword == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                assert {f"!{source}", f"!{source}/"} & patterns, source
