"""Guardrail checks and the streak that turns breaches into a rollback, free of I/O.

Per variant over the window, each against the experiment's threshold:

- ``error_rate``: failed recommendation calls over calls, at most the threshold;
- ``latency_p95``: the 95th percentile of serve latency in ms, at most the threshold;
- ``arm_concentration``: share of the variant's serves whose top-ranked item is
  its most common top item, at most the threshold;
- ``reward_drop``: CTR relative to the control's, no worse than minus the
  threshold, and only when a one-sided test says so at ``alpha``:
  ``z = (log(ctr / control_ctr) - log(1 - threshold)) / se < -z(1 - alpha)``.

A check needs ``min_sample`` calls (impressions for ``reward_drop``) on each
side it reads; below that its status is ``no_data``. A breach acts only after
``consecutive`` evaluations in a row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.stats import norm

from cineamate.common.experiments import GuardrailThresholds
from cineamate.guardrails.window import WindowStats

__all__ = ["Check", "Streaks", "check_experiment", "check_variant"]

Status = Literal["ok", "breach", "no_data"]


@dataclass(frozen=True)
class Check:
    guardrail: str
    status: Status
    observed: float | None
    threshold: float
    sample: int
    detail: str = ""


def _limit(name: str, observed: float | None, threshold: float, sample: int, minimum: int) -> Check:
    if observed is None or sample < minimum:
        return Check(name, "no_data", observed, threshold, sample, f"fewer than {minimum} samples")
    status: Status = "breach" if observed > threshold else "ok"
    return Check(name, status, observed, threshold, sample)


def reward_drop(
    variant: WindowStats,
    control: WindowStats,
    threshold: float,
    *,
    min_sample: int,
    alpha: float,
) -> Check:
    """The one-sided test that the CTR ratio is below ``1 - threshold``."""
    sample = min(variant.impressions, control.impressions)
    if sample < min_sample or not control.clicks:
        return Check("reward_drop", "no_data", None, threshold, sample, "not enough impressions")
    p = variant.clicks / variant.impressions
    q = control.clicks / control.impressions
    drop = 1 - p / q
    if p == 0:
        # No click at all: the ratio's log is undefined; use the control's rate as the bound.
        se = math.sqrt(1 / (q * variant.impressions) + (1 - q) / (q * control.impressions))
        z = (math.log(1 / variant.impressions / q) - math.log(1 - threshold)) / se
    else:
        se = math.sqrt((1 - p) / (p * variant.impressions) + (1 - q) / (q * control.impressions))
        z = (math.log(p / q) - math.log(1 - threshold)) / se
    significant = z < -norm.ppf(1 - alpha)
    status: Status = "breach" if significant else "ok"
    return Check("reward_drop", status, drop, threshold, sample, f"z = {z:.2f}")


def check_variant(
    variant: WindowStats,
    control: WindowStats | None,
    thresholds: GuardrailThresholds,
    *,
    min_sample: int,
    alpha: float,
) -> list[Check]:
    """Every guardrail of one variant (``control`` None for the control itself)."""
    checks = [
        _limit("error_rate", variant.error_rate, thresholds.error_rate, variant.calls, min_sample),
        _limit(
            "latency_p95",
            variant.latency_p95_ms,
            thresholds.latency_p95_ms,
            variant.calls,
            min_sample,
        ),
        _limit(
            "arm_concentration",
            variant.concentration,
            thresholds.arm_concentration,
            variant.served,
            min_sample,
        ),
    ]
    if control is not None:
        checks.append(
            reward_drop(
                variant, control, thresholds.reward_drop, min_sample=min_sample, alpha=alpha
            )
        )
    return checks


def check_experiment(
    variants: list[WindowStats], thresholds: GuardrailThresholds, *, min_sample: int
) -> Check:
    """The error rate of the whole experiment: a breach pauses it."""
    calls = sum(v.calls for v in variants)
    errors = sum(v.errors for v in variants)
    return _limit(
        "error_rate", errors / calls if calls else None, thresholds.error_rate, calls, min_sample
    )


class Streaks:
    """Consecutive breaching evaluations per (experiment, variant, guardrail)."""

    def __init__(self, needed: int) -> None:
        self._needed = needed
        self._counts: dict[tuple[str, str | None, str], int] = {}

    def record(self, experiment_id: str, variant: str | None, check: Check) -> bool:
        """Count this evaluation; True when the breach has held long enough to act."""
        key = (experiment_id, variant, check.guardrail)
        count = self._counts.get(key, 0) + 1 if check.status == "breach" else 0
        self._counts[key] = count
        return count >= self._needed

    def reset(self, experiment_id: str, variant: str | None) -> None:
        for key in [k for k in self._counts if k[0] == experiment_id and k[1] == variant]:
            del self._counts[key]
