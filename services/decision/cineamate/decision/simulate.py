"""Simulated experiments for checking the decision engine's error rates (tests, benchmark).

Each simulated experiment has a control and one variant, the given number of
users a day per side (Poisson per hour, one reward each), Bernoulli clicks,
and is evaluated every hour of event time for ``days``; it stops at the
first ship or kill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cineamate.common.experiments import DecisionCriteria
from cineamate.decision.rules import Counts, decide

__all__ = ["SimulationResult", "simulate"]


@dataclass(frozen=True)
class SimulationResult:
    experiments: int
    ship_days: list[float]
    kill_days: list[float]

    @property
    def ship_share(self) -> float:
        return len(self.ship_days) / self.experiments

    @property
    def kill_share(self) -> float:
        return len(self.kill_days) / self.experiments

    @property
    def median_ship_day(self) -> float | None:
        return float(np.median(self.ship_days)) if self.ship_days else None


def simulate(
    experiments: int,
    *,
    base_ctr: float,
    uplift: float,
    users_per_day: int,
    seed: int,
    days: int = 14,
    criteria: DecisionCriteria | None = None,
) -> SimulationResult:
    """Run ``experiments`` simulated experiments with a true relative ``uplift``."""
    criteria = criteria or DecisionCriteria()
    rng = np.random.default_rng(seed)
    hours = days * 24
    ship_days: list[float] = []
    kill_days: list[float] = []
    rates = np.array([[base_ctr * (1 + uplift)], [base_ctr]])
    for _ in range(experiments):
        arrivals = rng.poisson(users_per_day / 24, size=(2, hours))
        trials = np.cumsum(arrivals, axis=1)
        clicks = np.cumsum(rng.binomial(arrivals, rates), axis=1)
        for hour in range(hours):
            verdict = decide(
                Counts(float(trials[0, hour]), float(clicks[0, hour])),
                Counts(float(trials[1, hour]), float(clicks[1, hour])),
                criteria=criteria,
                days=(hour + 1) / 24,
                srm=None,
            )
            if verdict.decision == "ship":
                ship_days.append((hour + 1) / 24)
                break
            if verdict.decision == "kill" and hour + 1 < hours:
                kill_days.append((hour + 1) / 24)
                break
    return SimulationResult(experiments, ship_days, kill_days)
