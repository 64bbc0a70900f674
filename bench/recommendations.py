"""Recommendations per second of one assignment instance, under open-loop load.

The whole platform runs as ``cineamate run`` would start it for a user (its
own processes, embedded broker, PostgreSQL and Redis) in a temporary home. One
experiment over a MovieLens-1M-sized catalogue (3,706 items) serves 99% of the
users from Thompson Sampling, whose posterior is seeded warm in Redis before
any request, and 1% from a random control.

The load comes from ``python -m cineamate.loadgen`` in a process of its own:
requests planned at a constant rate, latency from the planned time to the end
of the response, so a server that falls behind cannot hide it. The rate steps
up, and at every step three targets take turns under the same conditions: the
same-run baseline (a bare FastAPI app on uvicorn with uvloop and httptools, 1
worker), the assignment service's port, and the public entry (the gateway,
which forwards to the same assignment instance).

A step passes when its p99 is at most 10 ms, no request failed (errors,
timeouts, requests never sent) and the achieved rate is at least 95% of the
planned one. ``*_rps_max`` is the highest passing step. Latency percentiles
count every planned request of the window; one left unanswered when the
generator gave up counts with the time it had waited, so a saturated step
reports a lower bound (printed with ``>=``) rather than hiding its failures.
The service's own ``/metrics`` histograms are scraped around every step, and
every process's CPU is measured, so that a missed target says where the time
went.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from bench._machine import machine_cpu_seconds
from bench._platform import (
    Platform,
    PlatformFailed,
    create_running_experiment,
    make_home,
    start_bare_app,
    start_platform,
    stop_platform,
)
from bench._registry import Details, Figures, RunOptions, add_ratio, add_target, benchmark
from cineamate.policies import ArmState
from cineamate.stack.processes import stop_process

N_ITEMS = 3_706
SLATE_SIZE = 10
USERS = 100_000
SEED = 1_000_213
RATES = (250, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 4_000)
RATES_QUICK = (250, 1_000, 2_000, 3_000)
# Steps that run even past a target's saturation, because figures are read there.
ALWAYS_RUN = {"baseline": (1_000, 2_000), "assignment": (1_000, 2_000), "gateway": ()}
STEP_SECONDS, STEP_SECONDS_QUICK = 10.0, 3.0
WARMUP_SECONDS, WARMUP_SECONDS_QUICK = 2.0, 1.0
GRACE_SECONDS = 2.0
CONNECTIONS = 64
P99_LIMIT_MS = 10.0
ACHIEVED_SHARE = 0.95
# A step this far behind leaves a backlog; higher steps would measure only the backlog.
SATURATED_SHARE = 0.90
PAUSE_SECONDS = 1.0
TARGET_RPS = 2_000
_TARGET_SPEC = (
    "spec: one assignment instance serves >= 2,000 recommendations/s with p99 <= 10 ms "
    "(met only if that step also had no failed request and achieved >= 95% of the plan)"
)
_REC_PATH = "/api/movies/recommendations"


def _create_experiment(platform: Platform) -> str:
    return create_running_experiment(
        platform,
        {
            "name": "recommendations benchmark",
            "catalogue": list(range(1, N_ITEMS + 1)),
            "policies": [
                {"name": "thompson", "type": "thompson", "weight": 99},
                {"name": "control", "type": "random", "control": True, "weight": 1},
            ],
            "traffic": 1.0,
            "slate_size": SLATE_SIZE,
        },
    )


def _warm_state(seed: int) -> ArmState:
    """Heavy-tailed exposure with CTRs around 10%, as ``bench/policies.py`` builds it."""
    rng = np.random.default_rng(seed)
    pulls = np.floor(rng.pareto(1.2, N_ITEMS) * 20)
    successes = rng.binomial(pulls.astype(np.int64), rng.beta(1.0, 9.0, N_ITEMS))
    return ArmState(np.arange(1, N_ITEMS + 1), pulls, successes.astype(np.float64), version=1)


def _seed_posterior(platform: Platform, experiment_id: str) -> dict[str, float]:
    state = _warm_state(SEED)
    fields: dict[Any, bytes] = state.to_hash()
    client = Redis.from_url(platform.redis_url)
    try:
        client.hset(f"cineamate:posterior:{experiment_id}:thompson", mapping=fields)
    finally:
        client.close()
    return {
        "total_pulls": state.total_pulls,
        "total_successes": float(state.successes.sum()),
        "max_pulls": float(state.pulls.max()),
        "median_pulls": float(np.median(state.pulls)),
        "unplayed_share": float(np.mean(state.pulls == 0)),
        "version": state.version,
    }


def _warm_up(platform: Platform, experiment_id: str) -> dict[str, Any]:
    """A few requests load the posterior (Thompson's propensities are computed in a thread),
    then a pause; a slate from the seeded version proves the warm state is served."""
    headers = {"Authorization": f"Bearer {platform.client_key}"}
    seen: dict[str, int] = {}
    versions: set[int] = set()
    with httpx.Client(base_url=platform.url("assignment"), headers=headers, timeout=30) as client:
        for round_number in range(2):
            for user in range(20):
                answer = client.get(
                    _REC_PATH, params={"experiment_id": experiment_id, "user_id": f"w{user}"}
                )
                if answer.status_code != 200:
                    raise PlatformFailed(
                        f"warm-up answered {answer.status_code}: {answer.text[:500]}"
                    )
                body = answer.json()
                seen[body["variant"]] = seen.get(body["variant"], 0) + 1
                if body["variant"] == "thompson":
                    versions.add(body["state_version"])
                if len(body["items"]) != SLATE_SIZE:
                    raise PlatformFailed(f"a slate of {len(body['items'])} items, not {SLATE_SIZE}")
            if round_number == 0:
                time.sleep(2.0)
    if versions != {1}:
        raise PlatformFailed(f"thompson served state versions {sorted(versions)}, not the seed")
    return {"variants_seen": seen, "thompson_state_versions": sorted(versions)}


# --- measurement ---------------------------------------------------------------------------


def _process_groups(platform: Platform, baseline_pid: int) -> dict[str, list[psutil.Process]]:
    """The processes whose CPU a step accounts: each service, the stores, the baseline."""
    groups: dict[str, list[psutil.Process]] = {"baseline": [psutil.Process(baseline_pid)]}
    root = psutil.Process(platform.process.pid)
    groups["supervisor"] = [root]
    for child in root.children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.Error:
            continue
        name = "stores"
        if "serve" in command and command.index("serve") + 1 < len(command):
            name = command[command.index("serve") + 1]
        groups.setdefault(name, []).append(child)
    return groups


def _cpu_seconds(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    used = {}
    for name, processes in groups.items():
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        used[name] = total
    return used | machine_cpu_seconds()


def _histograms(text: str, name: str, keep: Callable[[dict[str, str]], bool]) -> dict[str, float]:
    """Cumulative bucket counts (by ``le``), sum and count of one histogram, summed over the
    label sets ``keep`` accepts."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if not keep(sample.labels):
                continue
            if sample.name.endswith("_bucket"):
                key = sample.labels["le"]
            elif sample.name.endswith("_sum"):
                key = "sum"
            elif sample.name.endswith("_count"):
                key = "count"
            else:
                continue
            found[key] = found.get(key, 0.0) + float(sample.value)
    return found


def _quantile(buckets: dict[str, float], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket that holds the rank."""
    bounds = sorted((float(le), count) for le, count in buckets.items())
    total = bounds[-1][1] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in bounds:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def _histogram_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    count = delta.pop("count", 0.0)
    seconds = delta.pop("sum", 0.0)
    if count <= 0:
        return {"count": 0}
    p50, p99 = _quantile(delta, 0.50), _quantile(delta, 0.99)
    share_over_10ms = 1.0 - delta.get("0.01", count) / count
    return {
        "count": int(count),
        "mean_ms": 1_000.0 * seconds / count,
        "p50_ms": None if p50 is None else 1_000.0 * p50,
        "p99_ms": None if p99 is None else 1_000.0 * p99,
        "share_over_10ms": share_over_10ms,
    }


def _server_metrics(platform: Platform, experiment_id: str) -> dict[str, dict[str, float]]:
    """The service-side histograms of the recommendation path, in the assignment service and
    in the gateway (whose forwarded requests are all recommendations during a step)."""
    assignment = httpx.get(f"{platform.url('assignment')}/metrics", timeout=10).text
    gateway = httpx.get(f"{platform.url('gateway')}/metrics", timeout=10).text
    return {
        "handler": _histograms(
            assignment,
            "cineamate_recommendation_duration_seconds",
            lambda labels: labels.get("experiment") == experiment_id,
        ),
        "assignment_http": _histograms(
            assignment,
            "cineamate_http_request_duration_seconds",
            lambda labels: labels.get("route") == _REC_PATH,
        ),
        "gateway_http": _histograms(
            gateway,
            "cineamate_http_request_duration_seconds",
            lambda labels: labels.get("route") == "forwarded",
        ),
    }


@dataclass(frozen=True)
class _Target:
    name: str
    port: int
    path: str
    authorization: str | None


def _drive(target: _Target, rate: int, seconds: float, warmup: float, seed: int) -> dict[str, Any]:
    """One open-loop step from a separate process; its JSON report."""
    env = dict(os.environ)
    command = [
        sys.executable,
        "-m",
        "cineamate.loadgen",
        f"--port={target.port}",
        f"--rate={rate}",
        f"--duration={seconds}",
        f"--warmup={warmup}",
        f"--grace={GRACE_SECONDS}",
        f"--connections={CONNECTIONS}",
        f"--path={target.path}",
        f"--users={USERS}",
        f"--seed={seed}",
    ]
    if target.authorization is not None:
        env["LOADGEN_AUTHORIZATION"] = target.authorization
        command.append("--header-env=Authorization=LOADGEN_AUTHORIZATION")
    answer = subprocess.run(
        command, env=env, capture_output=True, timeout=warmup + seconds + GRACE_SECONDS + 60
    )
    if answer.returncode != 0:
        raise RuntimeError(f"the load generator failed: {answer.stderr.decode()[-2_000:]}")
    report: dict[str, Any] = json.loads(answer.stdout)
    return report


def _step(
    target: _Target,
    rate: int,
    seconds: float,
    warmup: float,
    seed: int,
    platform: Platform,
    experiment_id: str,
    groups: dict[str, list[psutil.Process]],
) -> dict[str, Any]:
    platform.check_alive()
    metrics_before = _server_metrics(platform, experiment_id)
    cpu_before = _cpu_seconds(groups)
    started = time.perf_counter()
    report = _drive(target, rate, seconds, warmup, seed)
    wall = time.perf_counter() - started
    cpu_after = _cpu_seconds(groups)
    metrics_after = _server_metrics(platform, experiment_id)
    shares = {name: (cpu_after[name] - cpu_before[name]) / wall for name in cpu_after}
    ours = sum(v for k, v in shares.items() if not k.startswith("machine_"))
    shares["generator"] = report["generator_cpu_share"]
    shares["other_processes"] = max(
        shares.pop("machine_busy") - ours - report["generator_cpu_share"], 0.0
    )
    latency = report["latency_all_ms"]
    passed = (
        report["failed"] == 0
        and latency["p99_ms"] <= P99_LIMIT_MS
        and report["achieved_rate_per_s"] >= ACHIEVED_SHARE * rate
    )
    server = {
        name: _histogram_delta(metrics_before[name], metrics_after[name]) for name in metrics_after
    }
    used = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    if target.name == "baseline":
        # No metrics there: the window's answers, scaled to the warm-up as well.
        served = report["completed"] * (warmup + seconds) / seconds
    else:
        served = server["assignment_http"]["count"]
    cpu_us_per_request = {
        name: 1e6 * used[name] / served for name in _SERVING[target.name] if served and name in used
    }
    return {
        "target": target.name,
        "planned_per_s": rate,
        "achieved_per_s": report["achieved_rate_per_s"],
        "p50_ms": latency["p50_ms"],
        "p90_ms": latency["p90_ms"],
        "p99_ms": latency["p99_ms"],
        "p999_ms": latency["p999_ms"],
        "max_ms": latency["max_ms"],
        "answered_latency_ms": report["latency_ms"],
        "requests": report["planned"],
        "errors_by_status": report["errors_by_status"],
        "timeouts": report["timeouts"],
        "unsent": report["unsent"],
        "error_rate": report["error_rate"],
        "generator_lag_p99_ms": report["generator_lag_p99_ms"],
        "generator_lag_max_ms": report["generator_lag_max_ms"],
        "generator_fell_behind": report["generator_fell_behind"],
        "send_lag_max_ms": report["send_lag_max_ms"],
        "passed": passed,
        "saturated": report["achieved_rate_per_s"] < SATURATED_SHARE * rate
        or report["timeouts"] + report["unsent"] > 0.01 * report["planned"],
        "server_side": server if target.name != "baseline" else {},
        "cpu_share": {name: round(share, 3) for name, share in shares.items()},
        "cpu_us_per_request": {name: round(us, 1) for name, us in cpu_us_per_request.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


_SERVING = {
    "baseline": ("baseline",),
    "assignment": ("assignment",),
    "gateway": ("gateway", "assignment"),
}
_NOT_PLATFORM = ("baseline", "generator", "other_processes", "machine_steal")
_STEP_COLUMNS = (
    "target",
    "planned",
    "achieved",
    "p50",
    "p99",
    "max",
    "failed",
    "srv p99",
    "hdl p99",
    "gen lag",
    "cpu srv",
    "us/req",
    "cpu gen",
    "cpu plat",
    "cpu ext",
    "pass",
)


def _step_row(step: dict[str, Any]) -> tuple[str, ...]:
    if "skipped" in step:
        blank = [""] * (len(_STEP_COLUMNS) - 3)
        return (step["target"], f"{step['planned_per_s']:,}", "skipped", *blank)
    target = step["target"]
    server = step["server_side"]
    http_p99 = (server.get("gateway_http" if target == "gateway" else "assignment_http") or {}).get(
        "p99_ms"
    )
    handler_p99 = (server.get("handler") or {}).get("p99_ms")
    cpu = step["cpu_share"]
    serving = _SERVING[target]
    platform_rest = sum(
        share for name, share in cpu.items() if name not in (*_NOT_PLATFORM, *serving)
    )
    failed = sum(step["errors_by_status"].values()) + step["timeouts"] + step["unsent"]
    # Unanswered requests count with the time they had waited: a lower bound.
    bound = ">=" if step["timeouts"] + step["unsent"] else ""
    per_request = sum(step["cpu_us_per_request"].get(name, 0.0) for name in serving)
    return (
        target,
        f"{step['planned_per_s']:,}",
        f"{step['achieved_per_s']:,.0f}",
        f"{bound}{step['p50_ms']:.1f}",
        f"{bound}{step['p99_ms']:.1f}",
        f"{bound}{step['max_ms']:.0f}",
        str(failed),
        "" if http_p99 is None else f"{http_p99:.1f}",
        "" if handler_p99 is None else f"{handler_p99:.1f}",
        f"{step['generator_lag_p99_ms']:.1f}",
        f"{sum(cpu.get(name, 0.0) for name in serving):.2f}",
        f"{per_request:,.0f}",
        f"{cpu['generator']:.2f}",
        f"{platform_rest:.2f}",
        f"{cpu['other_processes']:.2f}",
        "yes" if step["passed"] else "no",
    )


def _format_steps(steps: list[dict[str, Any]]) -> str:
    """The per-step table, as printed."""
    rows = [_STEP_COLUMNS, *(_step_row(step) for step in steps)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_STEP_COLUMNS))]
    lines = ["  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _rps_max(steps: list[dict[str, Any]], target: str) -> float:
    passing = [s["planned_per_s"] for s in steps if s["target"] == target and s.get("passed")]
    return float(max(passing, default=0))


def _at(steps: list[dict[str, Any]], target: str, rate: int) -> dict[str, Any]:
    return next(s for s in steps if s["target"] == target and s["planned_per_s"] == rate)


@benchmark("recommendations")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """Recommendations/s of one assignment instance at p99 <= 10 ms, vs bare FastAPI, open loop."""
    rates = RATES_QUICK if options.quick else RATES
    seconds = STEP_SECONDS_QUICK if options.quick else STEP_SECONDS
    warmup = WARMUP_SECONDS_QUICK if options.quick else WARMUP_SECONDS
    home = make_home("rec")
    platform: Platform | None = None
    baseline: subprocess.Popen[bytes] | None = None
    steps: list[dict[str, Any]] = []
    leftovers: list[str] = []
    started = time.perf_counter()
    try:
        platform = start_platform(home)
        ready_s = time.perf_counter() - started
        experiment_id = _create_experiment(platform)
        posterior = _seed_posterior(platform, experiment_id)
        warm = _warm_up(platform, experiment_id)
        baseline, baseline_port = start_bare_app(home)
        groups = _process_groups(platform, baseline.pid)
        client = f"Bearer {platform.client_key}"
        rec_path = f"{_REC_PATH}?experiment_id={experiment_id}&user_id=u{{user}}"
        targets = [
            _Target("baseline", baseline_port, "/bench?user_id=u{user}", None),
            _Target("assignment", platform.ports["assignment"], rec_path, client),
            _Target("gateway", platform.ports["gateway"], rec_path, client),
        ]
        saturated_at: dict[str, int] = {}
        for number, rate in enumerate(rates):
            for target in targets:
                if target.name in saturated_at and rate not in ALWAYS_RUN[target.name]:
                    steps.append(
                        {
                            "target": target.name,
                            "planned_per_s": rate,
                            "skipped": f"saturated at {saturated_at[target.name]} rps",
                        }
                    )
                    continue
                step = _step(
                    target,
                    rate,
                    seconds,
                    warmup,
                    SEED + number,
                    platform,
                    experiment_id,
                    groups,
                )
                steps.append(step)
                if step["saturated"]:
                    saturated_at.setdefault(target.name, rate)
                # Let a backlog (events to the broker, consumers downstream) drain.
                time.sleep(PAUSE_SECONDS * (3 if step["saturated"] else 1))
    finally:
        if baseline is not None:
            stop_process(baseline, timeout=10)
        if platform is not None:
            leftovers = stop_platform(platform)
        shutil.rmtree(home, ignore_errors=True)

    table = _format_steps(steps)
    print(f"recommendations: per-step table (ms; cpu in cores)\n{table}\n", flush=True)
    figures: Figures = {
        "rec_p99_ms_at_1000rps": _at(steps, "assignment", 1_000)["p99_ms"],
        "rec_p99_ms_at_2000rps": _at(steps, "assignment", 2_000)["p99_ms"],
        "rec_rps_max": _rps_max(steps, "assignment"),
        "rec_gateway_rps_max": _rps_max(steps, "gateway"),
        "baseline_fastapi_p99_ms_at_1000rps": _at(steps, "baseline", 1_000)["p99_ms"],
        "baseline_fastapi_p99_ms_at_2000rps": _at(steps, "baseline", 2_000)["p99_ms"],
        "baseline_fastapi_rps_max": _rps_max(steps, "baseline"),
    }
    details: Details = {
        "config": {
            "rates_per_s": list(rates),
            "step_seconds": seconds,
            "warmup_seconds": warmup,
            "grace_seconds": GRACE_SECONDS,
            "connections": CONNECTIONS,
            "users": USERS,
            "n_items": N_ITEMS,
            "slate_size": SLATE_SIZE,
            "variants": {"thompson": 99, "control (random)": 1},
            "pass_rule": (
                f"p99 <= {P99_LIMIT_MS:g} ms, no failed request, "
                f"achieved >= {ACHIEVED_SHARE:.0%} of planned"
            ),
            "seed": SEED,
        },
        "platform_ready_s": ready_s,
        "experiment_id": experiment_id,
        "posterior": posterior,
        "warm_up": warm,
        "steps": steps,
        "steps_table": table.splitlines(),
        "leftover_processes": leftovers,
        "load_average_1m_end": round(os.getloadavg()[0], 2),
    }
    add_ratio(figures, details, "rec_p99_ms_at_1000rps", "baseline_fastapi_p99_ms_at_1000rps")
    add_ratio(figures, details, "rec_p99_ms_at_2000rps", "baseline_fastapi_p99_ms_at_2000rps")
    if figures["baseline_fastapi_rps_max"] > 0:
        add_ratio(figures, details, "rec_rps_max", "baseline_fastapi_rps_max")
        add_ratio(figures, details, "rec_gateway_rps_max", "baseline_fastapi_rps_max")
    add_target(details, figures, "rec_p99_ms_at_2000rps", P99_LIMIT_MS, _TARGET_SPEC)
    at_target = _at(steps, "assignment", TARGET_RPS)
    details["targets"]["rec_p99_ms_at_2000rps"]["met"] = bool(at_target["passed"])
    if leftovers:
        raise PlatformFailed(f"processes outlived the platform: {leftovers}")
    return figures, details
