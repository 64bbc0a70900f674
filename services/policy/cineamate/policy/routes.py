"""HTTP routes of the policy service."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from cineamate.common.auth import Role, require
from cineamate.common.errors import DependencyUnavailable, NotFound
from cineamate.common.experiments import ExperimentCache
from cineamate.policies import ArmState
from cineamate.policy.models import ArmStateRead, PosteriorRead
from cineamate.policy.service import PosteriorKey, posterior_means
from cineamate.policy.store import PosteriorStore

__all__ = ["router"]

router = APIRouter(tags=["policy"], dependencies=[Depends(require(Role.READ))])


def _stores(request: Request) -> tuple[ExperimentCache, PosteriorStore]:
    # The learner builds the stores once the dependencies connect; until then, not ready.
    experiments: ExperimentCache | None = getattr(request.app.state, "experiments", None)
    posteriors: PosteriorStore | None = getattr(request.app.state, "posteriors", None)
    if experiments is None or posteriors is None:
        raise DependencyUnavailable("the learner is still starting", code="unavailable.starting")
    return experiments, posteriors


@router.get("/api/experiments/{experiment_id}/policies/{variant}/state")
async def posterior_state(
    request: Request,
    experiment_id: str,
    variant: str,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    sort: Annotated[Literal["arm_id", "pulls", "posterior_mean"], Query()] = "arm_id",
) -> PosteriorRead:
    """Per-arm pulls, successes and posterior mean of one variant, and the version."""
    experiments, posteriors = _stores(request)
    experiment = await experiments.get(experiment_id)
    if experiment is None:
        raise NotFound(f"no experiment {experiment_id!r}", code="not_found.experiment")
    config = experiment.config.variant(variant)
    if config is None:
        raise NotFound(
            f"experiment {experiment_id!r} has no policy {variant!r}", code="not_found.policy"
        )
    stored = await posteriors.load(PosteriorKey(experiment_id, variant))
    state = stored.state if stored else ArmState.empty(await experiments.catalogue(experiment))
    means = posterior_means(state, config)
    if sort == "arm_id":
        order = np.arange(state.n_arms)
    else:
        values = state.pulls if sort == "pulls" else means
        order = np.lexsort((state.arm_ids, -values))
    if limit is not None:
        order = order[:limit]
    arms = [
        ArmStateRead(
            arm_id=int(state.arm_ids[i]),
            pulls=float(state.pulls[i]),
            successes=float(state.successes[i]),
            posterior_mean=float(means[i]),
        )
        for i in order
    ]
    return PosteriorRead(
        experiment_id=experiment_id,
        variant=variant,
        policy_type=config.type,
        version=state.version,
        total_pulls=state.total_pulls,
        total_successes=float(state.successes.sum()),
        arms=arms,
    )
