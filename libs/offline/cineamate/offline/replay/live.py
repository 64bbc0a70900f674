"""``cineamate replay --live URL``: replay a log through the running platform, then offline.

The log and its window are chosen exactly as by the offline replay. An
experiment is created on the platform with one variant per policy and a
control, over the window's catalogue, all users in it, and started; the
window's events drive it on an accelerated event-time clock
(``live_driver``); then each variant's live replay CTR is compared with the
offline replay of its policy over the same events (``live_compare``).
Results go to ``DIR/live.json`` and ``DIR/live.md``.

    >>> spec = LiveSpec(replay=ReplaySpec(data=Path("synth")), url="http://127.0.0.1:8000")
    >>> result = run_live(spec)  # doctest: +SKIP
    >>> write_live_report(result, Path("out"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import ConfigError
from cineamate.offline.replay.live_compare import VariantComparison, compare
from cineamate.offline.replay.live_driver import (
    DEFAULT_CONCURRENCY,
    DriveResult,
    Pacing,
    PlatformClient,
    drive,
)
from cineamate.offline.replay.report import estimate_cell, json_ready
from cineamate.offline.replay.run import (
    ReplaySpec,
    ReplayWindow,
    load_window,
    progress_counter,
)

__all__ = [
    "CONTROL_VARIANT",
    "DEFAULT_RATE",
    "DEFAULT_REWARD_WINDOW_SECONDS",
    "LiveResult",
    "LiveSpec",
    "live_table",
    "run_live",
    "write_live_report",
]

FloatArray = npt.NDArray[np.float64]

CONTROL_VARIANT = "control"
DEFAULT_RATE = 100.0
DEFAULT_REWARD_WINDOW_SECONDS = 5.0
# A rollback by a guardrail would move a variant's users to the control halfway through.
_GUARDRAILS_THAT_NEVER_ACT = {
    "error_rate": 1.0,
    "latency_p95_ms": 3_600_000.0,
    "arm_concentration": 1.0,
    "reward_drop": 1.0,
}

DESIGN_DIFFERENCES = """\
Differences that remain by design:

- The platform learns online: a served item's outcome reaches the learner only
  when the click arrives or its reward window (REWARD_WINDOW s of wall time, about
  EVENT_SECONDS s of event time at this speed) closes, and the variant serves from its
  posterior only after the learner's update has reached the assignment service.
  The offline replay learns from a match before the next event.
- The platform learns from every serve: each item of every slate, matched or not,
  gets an outcome (0 unless clicked). The offline replay learns only from matched
  events, from the logged item alone.
- A click is sent as soon as its slate comes back; one that reaches the platform
  after its serve's reward window (when the platform answers slowly) is a late
  click, counted here but never learnt from.
- Randomness differs: the platform's draws are its own; the offline figure is the
  mean over SEEDS seeds.
- The users are assigned by the platform's hash of their id, so a variant's
  events are a sample of users, not of events; the intervals treat events as
  independent.
"""


@dataclass(frozen=True)
class LiveSpec:
    """A live replay: the offline replay it mirrors, where the platform is, how fast to go.

    The policies of ``replay`` become the variants, with ``control`` as the control.
    ``speedup`` (event seconds per wall second) wins over ``rate`` (events per wall
    second on average); ``limit`` drives only the window's first events.
    """

    replay: ReplaySpec
    url: str
    admin_token: str | None = None
    client_key: str | None = None
    control: str = "random"
    speedup: float | None = None
    rate: float = DEFAULT_RATE
    limit: int | None = None
    reward_window_seconds: float = DEFAULT_REWARD_WINDOW_SECONDS
    concurrency: int = DEFAULT_CONCURRENCY
    name: str | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be at least 1")
        if not (self.reward_window_seconds > 0 and math.isfinite(self.reward_window_seconds)):
            raise ConfigError("--reward-window-seconds must be a positive number")

    @property
    def variants(self) -> tuple[str, ...]:
        return (*self.replay.policies, CONTROL_VARIANT)

    @property
    def policy_types(self) -> tuple[str, ...]:
        return (*self.replay.policies, self.control)


@dataclass(frozen=True)
class LiveResult:
    """The experiment the replay created, how the drive went, and the comparison."""

    spec: LiveSpec
    cut: ReplayWindow
    experiment_id: str
    pacing: Pacing
    drive: DriveResult
    comparisons: list[VariantComparison]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        window, events = self.cut.window, self.cut.events
        document: dict[str, Any] = json_ready(
            {
                "url": self.spec.url,
                "experiment_id": self.experiment_id,
                "data": str(self.spec.replay.data),
                "source": self.cut.source,
                "window": {
                    "label": window.label(),
                    "reason": window.reason,
                    "events": len(events),
                    "users": int(np.unique(events.users).size),
                    "items": int(events.catalogue.size),
                },
                "slate_size": self.spec.replay.k,
                "seeds": self.spec.replay.seeds,
                "level": self.spec.replay.level,
                "reward_window_seconds": self.spec.reward_window_seconds,
                "drive": {
                    "events": len(events),
                    "requested": len(events) - self.drive.failed,
                    "failed": self.drive.failed,
                    "failures": self.drive.failures,
                    "speedup": self.pacing.speedup,
                    "seconds": self.drive.seconds,
                    "events_per_second": self.drive.rate,
                    "lateness_seconds": _percentiles(self.drive.lateness),
                    "latency_seconds": _percentiles(self.drive.latency),
                },
                "variants": [comparison.to_dict() for comparison in self.comparisons],
                "all_agree": all(comparison.agree for comparison in self.comparisons),
                "seconds": self.seconds,
            }
        )
        return document


def run_live(
    spec: LiveSpec,
    on_drive: Callable[[int, int], None] | None = None,
    on_offline: Callable[[int, int], None] | None = None,
) -> LiveResult:
    """Run ``spec`` against the platform; progress callbacks get ``(done, total)`` events."""
    started = time.perf_counter()
    cut = _limited(load_window(spec.replay), spec.limit)
    times = cut.events.times
    pacing = Pacing(spec.speedup) if spec.speedup is not None else Pacing.for_rate(times, spec.rate)
    experiment_id, result = asyncio.run(
        _drive(spec, cut, pacing, progress_counter(len(times), on_drive))
    )
    offline_total = len(cut.events) * spec.replay.seeds
    comparisons = compare(
        spec.replay,
        cut,
        result,
        spec.variants,
        spec.policy_types,
        progress_counter(offline_total, on_offline),
    )
    return LiveResult(
        spec=spec,
        cut=cut,
        experiment_id=experiment_id,
        pacing=pacing,
        drive=result,
        comparisons=comparisons,
        seconds=time.perf_counter() - started,
    )


def write_live_report(result: LiveResult, out: Path) -> list[Path]:
    """``live.json`` and ``live.md`` in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    document = out / "live.json"
    document.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    report = out / "live.md"
    report.write_text(_markdown(result))
    return [document, report]


def live_table(comparisons: list[VariantComparison]) -> str:
    """The comparison as a Markdown table."""
    lines = [
        "| Variant | Policy | Events | Matches | Clicks | Live CTR | Offline CTR "
        "| Offline matches | Agree |",
        "|---|---|---:|---:|---:|---|---|---:|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.variant} | {c.policy} | {c.events:,} | {c.matches:,} | {c.clicks:,} "
            f"| {estimate_cell(c.live)} | {estimate_cell(c.offline)} | {c.offline_matches:,.1f} "
            f"| {'yes' if c.agree else 'no'} |"
        )
    return "\n".join(lines) + "\n"


async def _drive(
    spec: LiveSpec, cut: ReplayWindow, pacing: Pacing, on_progress: Callable[[int], None]
) -> tuple[str, DriveResult]:
    async with PlatformClient(
        spec.url, spec.admin_token, spec.client_key, concurrency=spec.concurrency
    ) as platform:
        await platform.check_client_key()
        experiment = await platform.create_experiment(_experiment_body(spec, cut))
        result = await drive(
            platform,
            experiment["id"],
            cut.events,
            spec.variants,
            k=spec.replay.k,
            pacing=pacing,
            concurrency=spec.concurrency,
            on_progress=on_progress,
        )
    return str(experiment["id"]), result


def _experiment_body(spec: LiveSpec, cut: ReplayWindow) -> dict[str, Any]:
    variants: list[dict[str, Any]] = [{"name": name, "type": name} for name in spec.replay.policies]
    variants.append({"name": CONTROL_VARIANT, "type": spec.control, "control": True})
    return {
        "name": spec.name or f"live replay of {spec.replay.data.name} ({cut.window.label()})",
        "catalogue": cut.events.catalogue.tolist(),
        "policies": variants,
        "traffic": 1.0,
        "slate_size": spec.replay.k,
        "reward_window_hours": spec.reward_window_seconds / 3600,
        "guardrails": _GUARDRAILS_THAT_NEVER_ACT,
    }


def _limited(cut: ReplayWindow, limit: int | None) -> ReplayWindow:
    if limit is None or limit >= len(cut.events):
        return cut
    propensities = cut.logged_propensities
    return replace(
        cut,
        events=cut.events.rows(slice(0, limit)),
        logged_propensities=None if propensities is None else propensities[:limit],
    )


def _markdown(result: LiveResult) -> str:
    spec, drive_result = result.spec, result.drive
    events = result.cut.events
    differences = (
        DESIGN_DIFFERENCES.replace("REWARD_WINDOW", f"{spec.reward_window_seconds:g}")
        .replace("EVENT_SECONDS", f"{spec.reward_window_seconds * result.pacing.speedup:,.0f}")
        .replace("SEEDS", str(spec.replay.seeds))
    )
    agree = sum(c.agree for c in result.comparisons)
    return (
        "# Live replay\n\n"
        f"Platform {spec.url}, experiment `{result.experiment_id}`.\n"
        f"Data: {result.cut.source}; window {result.cut.window.label()} "
        f"({result.cut.window.reason}).\n\n"
        f"{len(events):,} events of {int(np.unique(events.users).size):,} users over "
        f"{events.catalogue.size:,} items, slates of {spec.replay.k}, sent in "
        f"{drive_result.seconds:,.1f} s ({drive_result.rate:,.0f} events/s, event time "
        f"x{result.pacing.speedup:,.0f}); requests were sent at most "
        f"{drive_result.lateness.max(initial=0.0):,.2f} s after they were due, slates came "
        f"back in {np.median(drive_result.latency) * 1000 if len(events) else 0.0:,.1f} ms "
        f"(median); {drive_result.failed:,} requests failed.\n\n"
        "An event *matches* when the logged item is in the slate the platform served; "
        "a matched click is sent to the platform. Live CTR is clicks over matches; "
        "the offline CTR replays the same policy over the same events (the events of "
        f"the users the platform gave that variant), mean of {spec.replay.seeds} seeds. "
        f"Intervals are {spec.replay.level:.0%}; *agree* means they overlap.\n\n"
        f"{live_table(result.comparisons)}\n"
        f"{agree} of {len(result.comparisons)} variants agree.\n\n"
        "The experiment's guardrails were set never to act, since a rollback would "
        "move a variant's users to the control halfway through.\n\n"
        f"{differences}"
    )


def _percentiles(seconds: FloatArray) -> dict[str, float]:
    if seconds.size == 0:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    p50, p99 = np.quantile(seconds, [0.5, 0.99])
    return {"p50": float(p50), "p99": float(p99), "max": float(seconds.max())}
