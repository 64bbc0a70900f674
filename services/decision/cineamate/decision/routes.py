"""HTTP routes of the decision service."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request

from cineamate.common.auth import Role, require
from cineamate.common.experiments import require_experiment
from cineamate.decision.evaluate import evaluate
from cineamate.decision.settings import DecisionSettings

__all__ = ["router"]

router = APIRouter(tags=["decision"], dependencies=[Depends(require(Role.READ))])


@router.get("/api/experiments/{experiment_id}/decision")
async def decision(request: Request, experiment_id: str) -> dict[str, Any]:
    """Ship, iterate or kill, per variant against the control and overall, with the
    effect, its always-valid interval and p-value, sample sizes, days and the
    sample-ratio-mismatch check; and when the stored evaluation last ran."""
    pool: asyncpg.Pool = request.app.state.dependencies.pool
    experiment = await require_experiment(pool, experiment_id)
    settings: DecisionSettings = request.app.state.settings
    result = await evaluate(pool, experiment, tuned_uplift=settings.tuned_uplift)
    last = await pool.fetchval(
        "SELECT max(evaluated_at) FROM decisions WHERE experiment_id = $1", experiment_id
    )
    result["last_stored_evaluation"] = last.isoformat() if last else None
    return result
