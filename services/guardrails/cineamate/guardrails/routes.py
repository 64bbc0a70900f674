"""HTTP routes of the guardrails service."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request

from cineamate.common.auth import Role, require
from cineamate.common.experiments import require_experiment

__all__ = ["router"]

router = APIRouter(tags=["guardrails"], dependencies=[Depends(require(Role.READ))])


@router.get("/api/experiments/{experiment_id}/guardrails")
async def guardrails(request: Request, experiment_id: str) -> dict[str, Any]:
    """The latest status of every guardrail per variant (``*``: the whole experiment),
    and every rollback, newest first."""
    pool: asyncpg.Pool = request.app.state.dependencies.pool
    experiment = await require_experiment(pool, experiment_id)
    status = await pool.fetch(
        "SELECT variant, guardrail, status, observed, threshold, sample, detail, evaluated_at "
        "FROM guardrail_status WHERE experiment_id = $1 ORDER BY variant, guardrail",
        experiment_id,
    )
    rollbacks = await pool.fetch(
        "SELECT variant, guardrail, observed, threshold, window_seconds, action, rolled_back_at "
        "FROM guardrail_rollbacks WHERE experiment_id = $1 ORDER BY rolled_back_at DESC, id DESC",
        experiment_id,
    )
    return {
        "experiment_id": experiment_id,
        "thresholds": experiment.config.guardrails.model_dump(),
        "rolled_back": [v.name for v in experiment.config.policies if v.rolled_back],
        "guardrails": [
            {
                "name": row["guardrail"],
                "variant": row["variant"],
                "status": row["status"],
                "observed": row["observed"],
                "threshold": row["threshold"],
                "sample": row["sample"],
                "detail": row["detail"],
                "evaluated_at": row["evaluated_at"].isoformat(),
            }
            for row in status
        ],
        "rollbacks": [
            {
                "variant": row["variant"],
                "guardrail": row["guardrail"],
                "observed": row["observed"],
                "threshold": row["threshold"],
                "window_seconds": row["window_seconds"],
                "action": row["action"],
                "at": row["rolled_back_at"].isoformat(),
            }
            for row in rollbacks
        ],
    }
