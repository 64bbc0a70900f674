"""Startup: ``cineamate run`` to every service ready, and Ctrl-C to nothing left.

Issue 2 asks that all six services and the public entry answer 200 on
``/readyz`` within 30 s of start on a warm install (the virtualenv in place).
The public entry's ``/readyz`` is 200 only when every service's is, so the
benchmark times the spawn of ``cineamate run`` (as ``make run`` calls it,
without the demo) to the entry's first 200, polled every 50 ms, and then checks
each service's own ``/readyz``. Two cases, each repeated:

- ``startup_first_s``: an empty home, as on a first ``make run`` (the embedded
  PostgreSQL's initdb, the migrations, the topics, the tokens);
- ``startup_again_s``: the same home started again (its data kept).

``shutdown_s`` is SIGINT (Ctrl-C) to the exit of ``cineamate run``, and
``shutdown_leftover_processes`` counts the platform's processes still alive
then (killed and named in the details). The same-run baseline is one bare
FastAPI app on uvicorn, spawn to its first 200 (``baseline_app_start_s``): the
floor of any Python service's start on this machine.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._platform import Platform, make_home, start_bare_app, start_platform, stop_platform
from bench._registry import Details, Figures, RunOptions, add_ratio, add_target, benchmark
from cineamate.stack.processes import stop_process
from cineamate.stack.services import PROCESS_NAMES

REPEATS, REPEATS_QUICK = 3, 1
READY_TARGET_SECONDS = 30.0
_SPEC = "issue 2: all six services and the public entry answer 200 on /readyz within 30 s"


def _not_ready(platform: Platform) -> list[str]:
    """The processes whose own /readyz is not 200 (there should be none)."""
    failing = []
    for name in PROCESS_NAMES:
        status: int | str
        try:
            status = httpx.get(f"{platform.url(name)}/readyz", timeout=5).status_code
        except httpx.HTTPError as exc:
            status = repr(exc)
        if status != 200:
            failing.append(f"{name}: {status}")
    return failing


def _start_and_stop(home: Path) -> dict[str, Any]:
    platform = start_platform(home)
    not_ready = _not_ready(platform)
    started = time.monotonic()
    leftovers = stop_platform(platform)
    return {
        "ready_s": platform.ready_seconds,
        "not_ready": not_ready,
        "shutdown_s": time.monotonic() - started,
        "leftovers": leftovers,
    }


def _bare_app_start_seconds(home: Path) -> float:
    started = time.monotonic()
    process, _ = start_bare_app(home)
    elapsed = time.monotonic() - started
    stop_process(process, timeout=10)
    return elapsed


@benchmark("startup")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """cineamate run to every /readyz 200 (empty home, then again), and Ctrl-C to nothing left."""
    repeats = options.repeats(REPEATS, REPEATS_QUICK)
    runs: dict[str, list[dict[str, Any]]] = {"first": [], "again": []}
    baseline: list[float] = []
    for _ in range(repeats):
        home = make_home("startup")
        try:
            baseline.append(_bare_app_start_seconds(home))
            runs["first"].append(_start_and_stop(home))
            runs["again"].append(_start_and_stop(home))
        finally:
            shutil.rmtree(home, ignore_errors=True)
    every = runs["first"] + runs["again"]
    figures: Figures = {
        "startup_first_s": float(np.median([r["ready_s"] for r in runs["first"]])),
        "startup_again_s": float(np.median([r["ready_s"] for r in runs["again"]])),
        "startup_max_s": max(r["ready_s"] for r in every),
        "shutdown_s": float(np.median([r["shutdown_s"] for r in every])),
        "shutdown_leftover_processes": float(sum(len(r["leftovers"]) for r in every)),
        "startup_not_ready_services": float(sum(len(r["not_ready"]) for r in every)),
        "baseline_app_start_s": float(np.median(baseline)),
    }
    details: Details = {
        "repeats": repeats,
        "runs": runs,
        "baseline_app_start_s": baseline,
        "poll_seconds": 0.05,
    }
    add_ratio(figures, details, "startup_first_s", "baseline_app_start_s")
    add_ratio(figures, details, "startup_again_s", "baseline_app_start_s")
    add_target(details, figures, "startup_max_s", READY_TARGET_SECONDS, _SPEC)
    add_target(details, figures, "shutdown_leftover_processes", 0, "issue 2: Ctrl-C leaves nothing")
    add_target(details, figures, "startup_not_ready_services", 0, _SPEC)
    return figures, details
