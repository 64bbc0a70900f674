"""Ship, iterate or kill: the decision rules, free of I/O.

For a variant against the control, with the experiment's criteria:

- **ship** when, after ``min_window_days`` of event time, both sides have at
  least ``min_events_per_policy`` rewards, the always-valid p-value is at
  most ``significance_level`` (confidence ``1 - p`` at least
  ``min_confidence``) with the interval above zero, the relative uplift is at
  least ``min_uplift``, and the split shows no sample ratio mismatch;
- **kill** when the variant is significantly worse (the interval below zero,
  with enough rewards), or ``max_experiment_days`` have passed without a ship;
- **iterate** otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cineamate.common.experiments import DecisionCriteria
from cineamate.decision.sequential import SequentialResult, SrmResult, mixture_sprt

__all__ = ["Counts", "Verdict", "decide"]

Outcome = Literal["ship", "iterate", "kill"]
METHOD = "mSPRT (mixture sequential probability ratio test), always valid"


@dataclass(frozen=True)
class Counts:
    """Rewards (trials) and clicks (successes) of one variant."""

    trials: float
    successes: float

    @property
    def ctr(self) -> float | None:
        return self.successes / self.trials if self.trials else None


@dataclass(frozen=True)
class Verdict:
    decision: Outcome
    reasons: list[str]
    criteria: dict[str, bool]
    test: SequentialResult | None
    confidence: float | None
    days: float
    srm: SrmResult | None
    method: str = METHOD
    extra: dict[str, float] = field(default_factory=dict)


def decide(
    variant: Counts,
    control: Counts,
    *,
    criteria: DecisionCriteria,
    days: float,
    srm: SrmResult | None,
    tuned_uplift: float = 0.10,
) -> Verdict:
    """The verdict for ``variant`` against ``control`` after ``days`` of event time.

    The sequential test is tuned to detect a relative uplift of ``tuned_uplift``
    (or ``min_uplift`` if larger) fastest; it stays valid whatever the true effect.
    """
    pooled_trials = variant.trials + control.trials
    pooled = (variant.successes + control.successes) / pooled_trials if pooled_trials else 0.0
    test = mixture_sprt(
        variant.successes,
        variant.trials,
        control.successes,
        control.trials,
        alpha=criteria.significance_level,
        tau=max(criteria.min_uplift, tuned_uplift) * max(pooled, 1e-4),
    )
    confidence = 1 - test.p_value if test else None
    enough = min(variant.trials, control.trials) >= criteria.min_events_per_policy
    significant = (
        test is not None
        and test.p_value <= criteria.significance_level
        and confidence is not None
        and confidence >= criteria.min_confidence
    )
    better = significant and test is not None and test.low > 0
    worse = significant and test is not None and test.high < 0
    uplift_ok = test is not None and (test.relative_uplift or 0.0) >= criteria.min_uplift
    checks = {
        "min_window_days": days >= criteria.min_window_days,
        "min_events_per_policy": enough,
        "significant": significant,
        "min_uplift": uplift_ok,
        "no_sample_ratio_mismatch": not (srm and srm.mismatch),
        "within_max_experiment_days": days < criteria.max_experiment_days,
    }
    reasons = []
    if srm and srm.mismatch:
        reasons.append(f"sample ratio mismatch (p = {srm.p_value:.2g}): ship is blocked")
    if better and uplift_ok and enough and checks["min_window_days"] and not (srm and srm.mismatch):
        reasons.append("significant uplift of at least the minimum")
        decision: Outcome = "ship"
    elif worse and enough:
        reasons.append("significantly worse than the control")
        decision = "kill"
    elif not checks["within_max_experiment_days"]:
        reasons.append(f"{criteria.max_experiment_days:g} days passed without a meaningful uplift")
        decision = "kill"
    else:
        decision = "iterate"
        if not enough:
            reasons.append(f"fewer than {criteria.min_events_per_policy} rewards on a side")
        if not checks["min_window_days"]:
            reasons.append(f"{days:.1f} of at least {criteria.min_window_days:g} days")
        if enough and not significant:
            reasons.append("no significant difference yet")
        elif better and not uplift_ok:
            reasons.append(f"uplift below the minimum of {criteria.min_uplift:.0%}")
    return Verdict(decision, reasons, checks, test, confidence, days, srm)
