"""Always-valid inference for a CTR difference, and the sample-ratio-mismatch test.

Operators look at a running experiment as often as they like, so a fixed-
horizon test would ship false winners. The decision engine uses the mixture
sequential probability ratio test (mSPRT) of Johari, Pekelis and Walsh
("Always valid inference", 2017) for the difference of two CTRs, with a
normal mixing distribution N(0, tau^2) and the plug-in variance

    V = p_v (1 - p_v) / n_v + p_c (1 - p_c) / n_c.

Its likelihood ratio against "no difference" is

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

with d the observed difference. ``p = min(1, 1 / Lambda)`` is an always-valid
p-value: the chance that it ever drops below alpha under the null, however
often it is computed, is at most alpha. The matching confidence sequence is

    d +- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 log alpha)).

tau is the effect size the test is tuned for: a relative uplift (the
decision service's ``CINEAMATE_DECISION_TUNED_UPLIFT``, 10% by default, or the
experiment's minimum uplift if larger) times the pooled CTR. Any tau keeps
the guarantee; a tau near the true effect reaches a decision soonest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy.stats import chi2

__all__ = ["SequentialResult", "SrmResult", "mixture_sprt", "sample_ratio_mismatch"]


@dataclass(frozen=True)
class SequentialResult:
    """The difference of CTRs (variant minus control) and its always-valid inference."""

    difference: float
    low: float
    high: float
    p_value: float
    relative_uplift: float | None
    relative_low: float | None
    relative_high: float | None


def mixture_sprt(
    successes: float,
    trials: float,
    control_successes: float,
    control_trials: float,
    *,
    alpha: float,
    tau: float,
) -> SequentialResult | None:
    """mSPRT of the CTR difference; None without trials on either side."""
    if trials <= 0 or control_trials <= 0:
        return None
    p, q = successes / trials, control_successes / control_trials
    variance = p * (1 - p) / trials + q * (1 - q) / control_trials
    difference = p - q
    tau2 = max(tau, 1e-12) ** 2
    if variance <= 0:
        # Both CTRs are 0 or 1 so far: no evidence either way yet.
        return SequentialResult(difference, -1.0, 1.0, 1.0, None, None, None)
    total = variance + tau2
    log_lambda = 0.5 * math.log(variance / total) + tau2 * difference**2 / (2 * variance * total)
    p_value = 1.0 if log_lambda <= 0 else min(1.0, math.exp(-log_lambda))
    half = math.sqrt(variance * total / tau2 * (math.log(total / variance) - 2 * math.log(alpha)))
    low, high = difference - half, difference + half
    if q > 0:
        return SequentialResult(difference, low, high, p_value, difference / q, low / q, high / q)
    return SequentialResult(difference, low, high, p_value, None, None, None)


@dataclass(frozen=True)
class SrmResult:
    """Observed against configured split: chi-square statistic, p-value and the verdict."""

    statistic: float
    p_value: float
    mismatch: bool


def sample_ratio_mismatch(
    observed: Mapping[str, float], configured: Mapping[str, float], *, threshold: float = 0.001
) -> SrmResult | None:
    """Chi-square goodness of fit of observed counts to the configured shares."""
    names = [name for name in configured if configured[name] > 0]
    total = sum(observed.get(name, 0.0) for name in names)
    if total <= 0 or len(names) < 2:
        return None
    share_sum = sum(configured[name] for name in names)
    statistic = 0.0
    for name in names:
        expected = total * configured[name] / share_sum
        statistic += (observed.get(name, 0.0) - expected) ** 2 / expected
    p_value = float(chi2.sf(statistic, df=len(names) - 1))
    return SrmResult(statistic, p_value, p_value < threshold)
