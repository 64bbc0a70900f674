"""Write a replay's results: ``report.md``, ``results.json``, per-step and per-day CSVs.

``steps.csv`` has one row per matched event of each policy's first seed (the
step, the event's index and time, the reward, cumulative reward and regret);
``daily.csv`` the replay CTR per day and policy over all seeds.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from cineamate.offline.estimators import Estimate
from cineamate.offline.replay.log import DAY_SECONDS
from cineamate.offline.replay.run import ReplayResult

__all__ = ["ESTIMATOR_NAMES", "estimate_cell", "json_ready", "results_document", "write_report"]

ESTIMATOR_NAMES = ("replay", "ips", "snips", "dm", "dr")


def write_report(result: ReplayResult, out: Path) -> list[Path]:
    """Every output file of ``result`` in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    document = results_document(result)
    (out / "results.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(_markdown(result))
    written = [out / "results.json", out / "report.md", _steps(result, out), _daily(result, out)]
    from cineamate.offline.replay.plots import write_plots

    return written + write_plots(result, out)


def results_document(result: ReplayResult) -> dict[str, Any]:
    """The figures as JSON-ready data (nan as null)."""
    evaluation, spec = result.evaluation, result.spec
    document: dict[str, Any] = json_ready(
        {
            "data": str(spec.data),
            "source": result.source,
            "window": {
                "start": _date(result.window.start),
                "end": _date(result.window.end),
                "reason": result.window.reason,
                "events": len(evaluation.log),
                "users": int(np.unique(evaluation.log.users).size),
                "items": int(evaluation.log.catalogue.size),
            },
            "slate_size": spec.k,
            "seeds": spec.seeds,
            "level": spec.level,
            "logging_propensity": {
                "source": evaluation.propensity_source,
                "min_propensity": spec.min_propensity,
                "clipped_events": evaluation.clipped_events,
            },
            "reward_model": evaluation.model_source,
            "best_item_ctr": evaluation.best_item_ctr,
            "best_item_true_ctr": evaluation.best_item_true_ctr,
            "replay_seconds": result.seconds,
            "events_per_second": result.events_per_second,
            "machine": {"python": platform.python_version(), "platform": platform.platform()},
            "policies": {figures.policy: figures.to_dict() for figures in result.figures},
        }
    )
    return document


def _markdown(result: ReplayResult) -> str:
    evaluation, spec = result.evaluation, result.spec
    level = f"{spec.level:.0%}"
    lines = [
        "# Replay report",
        "",
        f"- Data: {result.source} (`{spec.data}`).",
        f"- Window: {result.window.label()}: {result.window.reason}.",
        f"- {len(evaluation.log):,} events, {evaluation.log.catalogue.size:,} items, "
        f"slates of {spec.k}, {spec.seeds} seed(s) per policy; replayed in "
        f"{result.seconds:.1f} s ({result.events_per_second:,.0f} events/s).",
        f"- Logging propensities: {evaluation.propensity_source}, floored at "
        f"{spec.min_propensity:g} ({evaluation.clipped_events:,} events clipped).",
        f"- Reward model for DM and DR: smoothed click rate per (cohort, item), "
        f"{evaluation.model_source}.",
        f"- Regret is against the best item in hindsight (click rate "
        f"{evaluation.best_item_ctr:.3f}), summed over matched events.",
        "",
        f"Every figure is the click rate of a recommended item, with its {level} interval.",
        "",
        "| Policy | CTR (replay) | Regret | IPS | SNIPS | DR | matches | ESS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for figures in result.figures:
        e = figures.estimates
        lines.append(
            f"| {figures.policy} | {estimate_cell(e['replay'])} | {figures.regret:,.1f} | "
            f"{estimate_cell(e['ips'])} | {estimate_cell(e['snips'])} | {estimate_cell(e['dr'])} | "
            f"{figures.matches:,.0f} | {figures.effective_sample_size:,.0f} |"
        )
    if evaluation.best_item_true_ctr is not None:
        lines += [
            "",
            "Against the planted truth (synthetic data): the true click rate of the slates "
            "each policy showed, and its pseudo-regret over matched events.",
            "",
            "| Policy | true CTR | DM | pseudo-regret |",
            "|---|---|---|---|",
        ]
        for figures in result.figures:
            lines.append(
                f"| {figures.policy} | {_number(figures.true_ctr)} | "
                f"{estimate_cell(figures.estimates['dm'])} | {_number(figures.pseudo_regret, 1)} |"
            )
    lines += [
        "",
        "Temporal stability: replay CTR per day over all seeds (see `ctr_per_day.png`).",
        "",
        "| Policy | days | spread (sd of daily CTR) |",
        "|---|---|---|",
    ]
    for figures in result.figures:
        lines.append(
            f"| {figures.policy} | {len(figures.daily_ctr)} | {_number(figures.daily_ctr_spread)} |"
        )
    lines += [
        "",
        "Notes:",
        "",
        "- The replay CTR (Li et al. 2011) is unbiased only when the log was collected "
        "uniformly at random. MovieLens was not: people rate what they chose to watch, so "
        "compare it with IPS, SNIPS and DR, which correct for the logging propensities.",
        "- A policy learns only from matched events (its slate held the logged item), so it "
        "learns from a small share of the log.",
        "- Intervals over several seeds are the mean of each seed's interval around the mean "
        "of the estimates; they do not include the variation between seeds.",
        "",
        "![cumulative reward](cumulative_reward.png)",
        "![regret](regret.png)",
        "![CTR per day](ctr_per_day.png)",
        "",
    ]
    return "\n".join(lines)


def _steps(result: ReplayResult, out: Path) -> Path:
    path = out / "steps.csv"
    log = result.evaluation.log
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["policy", "seed", "step", "event", "time", "item", "reward", "cum_reward", "regret"]
        )
        for figures in result.figures:
            run = figures.runs[0]
            events = np.flatnonzero(run.trace.matched)
            for step, event in enumerate(events.tolist()):
                writer.writerow(
                    [
                        figures.policy,
                        run.seed,
                        step + 1,
                        event,
                        int(log.times[event]),
                        int(log.items[event]),
                        f"{log.rewards[event]:g}",
                        f"{run.cumulative_reward[step]:g}",
                        f"{run.cumulative_regret[step]:.4f}",
                    ]
                )
    return path


def _daily(result: ReplayResult, out: Path) -> Path:
    path = out / "daily.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["policy", "date", "ctr"])
        for figures in result.figures:
            for day, ctr in sorted(figures.daily_ctr.items()):
                writer.writerow([figures.policy, _date(day * DAY_SECONDS), f"{ctr:.4f}"])
    return path


def estimate_cell(estimate: Estimate) -> str:
    """An estimate as ``value [low, high]`` for a table; ``n/a`` when undefined."""
    if math.isnan(estimate.value):
        return "n/a"
    return f"{estimate.value:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _date(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date().isoformat()


def json_ready(value: Any) -> Any:
    """nan and infinities as null, recursively: JSON has no nan."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value
