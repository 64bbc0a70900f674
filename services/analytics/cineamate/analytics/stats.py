"""The statistics the dashboard shows, free of I/O.

- CTR intervals are Wilson score intervals (good coverage even at small counts
  and CTRs near 0).
- Uplift versus control is relative (CTR ratio minus 1); its interval comes
  from the delta method on the log of the ratio. The absolute difference has
  a Wald interval.
- Fairness is the coefficient of variation (population standard deviation
  over mean) of CTR across cohort values.
- Cumulative regret of a variant is the clicks it would have had over its
  outcomes at the best variant's CTR so far, minus the clicks it had.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import norm

__all__ = [
    "Interval",
    "coefficient_of_variation",
    "cumulative_regret",
    "difference_interval",
    "uplift_interval",
    "wilson_interval",
]


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


_EMPTY = Interval(None, None, None)


def _z(confidence: float) -> float:
    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: float, trials: float, confidence: float = 0.95) -> Interval:
    """CTR and its Wilson score interval; all None without trials."""
    if trials <= 0:
        return _EMPTY
    z = _z(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(p, max(centre - half, 0.0), min(centre + half, 1.0))


def uplift_interval(
    successes: float,
    trials: float,
    control_successes: float,
    control_trials: float,
    confidence: float = 0.95,
) -> Interval:
    """Relative uplift of a CTR over the control's, with a delta-method interval."""
    if trials <= 0 or control_trials <= 0 or control_successes <= 0:
        return _EMPTY
    p, q = successes / trials, control_successes / control_trials
    estimate = p / q - 1
    if successes <= 0:
        return Interval(estimate, None, None)
    spread = _z(confidence) * math.sqrt((1 - p) / (trials * p) + (1 - q) / (control_trials * q))
    ratio = math.log(p / q)
    return Interval(estimate, math.exp(ratio - spread) - 1, math.exp(ratio + spread) - 1)


def difference_interval(
    successes: float,
    trials: float,
    control_successes: float,
    control_trials: float,
    confidence: float = 0.95,
) -> Interval:
    """Absolute CTR difference with its Wald interval."""
    if trials <= 0 or control_trials <= 0:
        return _EMPTY
    p, q = successes / trials, control_successes / control_trials
    spread = _z(confidence) * math.sqrt(p * (1 - p) / trials + q * (1 - q) / control_trials)
    return Interval(p - q, p - q - spread, p - q + spread)


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Population standard deviation over mean; None for fewer than two values or mean 0."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    if mean == 0:
        return None
    variance = sum((value - mean) ** 2 for value in values) / len(values)
    return math.sqrt(variance) / mean


def cumulative_regret(
    steps: Sequence[Mapping[str, tuple[float, float]]],
) -> list[dict[str, float]]:
    """Per step and variant, the regret so far against the best cumulative CTR so far.

    ``steps`` holds, per interval, each variant's (outcomes, rewards) in that interval.
    """
    outcomes: dict[str, float] = {}
    rewards: dict[str, float] = {}
    regrets = []
    for step in steps:
        for variant, (n, r) in step.items():
            outcomes[variant] = outcomes.get(variant, 0.0) + n
            rewards[variant] = rewards.get(variant, 0.0) + r
        rates = [rewards[v] / outcomes[v] for v in outcomes if outcomes[v] > 0]
        best = max(rates, default=0.0)
        regrets.append({v: outcomes[v] * best - rewards[v] for v in outcomes})
    return regrets
