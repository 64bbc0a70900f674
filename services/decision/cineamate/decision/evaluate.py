"""An experiment's decision from the analytics aggregates, and its periodic evaluation.

Counts come from the tables the analytics service keeps (rewards and clicks
per variant, users per variant); days are event time, from the first to the
last minute with serves, so replayed traffic is decided like live traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from cineamate.common.dependencies import Dependencies
from cineamate.common.experiments import Experiment, fetch_experiment
from cineamate.decision.rules import METHOD, Counts, Verdict, decide
from cineamate.decision.sequential import sample_ratio_mismatch
from cineamate.decision.settings import DecisionSettings

__all__ = ["DecisionLoop", "evaluate"]

_log = logging.getLogger(__name__)


async def _counts(pool: asyncpg.Pool, experiment_id: str) -> dict[str, Counts]:
    rows = await pool.fetch(
        "SELECT variant, outcomes, rewards FROM analytics_variant_totals WHERE experiment_id = $1",
        experiment_id,
    )
    return {row["variant"]: Counts(float(row["outcomes"]), float(row["rewards"])) for row in rows}


async def _users(pool: asyncpg.Pool, experiment_id: str) -> dict[str, float]:
    rows = await pool.fetch(
        "SELECT variant, count(*) AS users FROM analytics_users WHERE experiment_id = $1 "
        "GROUP BY variant",
        experiment_id,
    )
    return {row["variant"]: float(row["users"]) for row in rows}


async def _days(pool: asyncpg.Pool, experiment_id: str) -> float:
    row = await pool.fetchrow(
        "SELECT min(minute) AS first, max(minute) AS last FROM analytics_variant_minutes "
        "WHERE experiment_id = $1 AND serves > 0",
        experiment_id,
    )
    if row is None or row["first"] is None:
        return 0.0
    return float((row["last"] + timedelta(minutes=1) - row["first"]) / timedelta(days=1))


def _effect(verdict: Verdict) -> dict[str, Any] | None:
    test = verdict.test
    if test is None:
        return None
    return {
        "difference": test.difference,
        "difference_low": test.low,
        "difference_high": test.high,
        "relative_uplift": test.relative_uplift,
        "relative_low": test.relative_low,
        "relative_high": test.relative_high,
        "p_value": test.p_value,
    }


async def evaluate(
    pool: asyncpg.Pool, experiment: Experiment, *, tuned_uplift: float
) -> dict[str, Any]:
    """Per variant against the control: ship, iterate or kill with the reasons; the overall
    decision and the best variant."""
    config = experiment.config
    counts = await _counts(pool, experiment.id)
    users = await _users(pool, experiment.id)
    days = await _days(pool, experiment.id)
    configured = config.user_shares()
    srm = sample_ratio_mismatch(users, configured)
    control_name = config.control.name
    control = counts.get(control_name, Counts(0.0, 0.0))
    variants: list[dict[str, Any]] = []
    for variant in config.policies:
        if variant.name == control_name:
            continue
        mine = counts.get(variant.name, Counts(0.0, 0.0))
        verdict = decide(
            mine,
            control,
            criteria=config.decision,
            days=days,
            srm=srm,
            tuned_uplift=tuned_uplift,
        )
        variants.append(
            {
                "variant": variant.name,
                "policy_type": variant.type,
                "decision": verdict.decision,
                "reasons": verdict.reasons,
                "criteria": verdict.criteria,
                "ctr": mine.ctr,
                "control_ctr": control.ctr,
                "effect": _effect(verdict),
                "confidence": verdict.confidence,
                "sample_sizes": {"variant": mine.trials, "control": control.trials},
            }
        )
    shipping = [v for v in variants if v["decision"] == "ship"]
    if shipping:
        best = max(shipping, key=lambda v: v["effect"]["relative_uplift"] or 0.0)
        overall, best_variant = "ship", best["variant"]
    else:
        overall = (
            "kill" if variants and all(v["decision"] == "kill" for v in variants) else "iterate"
        )
        rated = [v for v in variants if v["ctr"] is not None]
        best_variant = max(rated, key=lambda v: v["ctr"])["variant"] if rated else None
    return {
        "experiment_id": experiment.id,
        "decision": overall,
        "best_variant": best_variant,
        "control": control_name,
        "method": METHOD,
        "significance_level": config.decision.significance_level,
        "days_elapsed": days,
        "sample_ratio_mismatch": {
            "observed_users": users,
            "configured_shares": configured,
            "statistic": srm.statistic if srm else None,
            "p_value": srm.p_value if srm else None,
            "mismatch": bool(srm and srm.mismatch),
        },
        "variants": variants,
    }


class DecisionLoop:
    """Evaluates every running experiment every interval and stores the verdicts;
    a Worker of the decision service."""

    name = "evaluator"

    def __init__(self, settings: DecisionSettings, deps: Dependencies) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool = deps.pool
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.evaluate_all()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                _log.exception("evaluation failed; retrying at the next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), self._settings.evaluation_interval_seconds
                )

    async def stop(self) -> None:
        self._stopping.set()

    async def evaluate_all(self) -> int:
        ids = await self._pool.fetch("SELECT id FROM experiments WHERE status = 'running'")
        for row in ids:
            experiment = await fetch_experiment(self._pool, row["id"])
            if experiment is None:
                continue
            result = await evaluate(
                self._pool, experiment, tuned_uplift=self._settings.tuned_uplift
            )
            await self._pool.execute(
                "INSERT INTO decisions (experiment_id, decision, best_variant, details) "
                "VALUES ($1, $2, $3, $4)",
                experiment.id,
                result["decision"],
                result["best_variant"],
                orjson.dumps(result).decode(),
            )
        return len(ids)
