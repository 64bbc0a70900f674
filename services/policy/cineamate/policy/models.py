"""Response models of the policy service."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ArmStateRead", "PosteriorRead"]


class ArmStateRead(BaseModel):
    arm_id: int
    pulls: float
    successes: float
    posterior_mean: float


class PosteriorRead(BaseModel):
    """A variant's posterior: per-arm counts and means, and the version they are at."""

    experiment_id: str
    variant: str
    policy_type: str
    version: int
    total_pulls: float
    total_successes: float
    arms: list[ArmStateRead]
