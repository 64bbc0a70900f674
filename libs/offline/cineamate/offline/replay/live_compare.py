"""Live against offline: each variant's replay CTR on the platform and in the offline replay.

The live replay CTR of a variant is its clicks over its matches (events whose
logged item was in the platform's slate), with the normal interval of a mean,
the same arithmetic as the offline replay CTR. The offline figure replays the
variant's policy over exactly the events the platform gave that variant, under
every seed (``evaluate.py``'s replay CTR and interval). The two *agree* when
their intervals overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cineamate.offline.estimators import Estimate, dm
from cineamate.offline.replay.evaluate import prepare_evaluation
from cineamate.offline.replay.live_driver import DriveResult
from cineamate.offline.replay.run import ReplaySpec, ReplayWindow, replay_policy

__all__ = ["VariantComparison", "compare", "intervals_overlap", "live_ctr"]

_NO_ESTIMATE = Estimate(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class VariantComparison:
    """One variant's live counts and CTR next to its policy's offline replay."""

    variant: str
    policy: str
    events: int
    matches: int
    clicks: int
    live: Estimate
    offline: Estimate
    # Mean matches over the offline seeds, on the same events.
    offline_matches: float

    @property
    def agree(self) -> bool:
        """Do the live and offline intervals overlap."""
        return intervals_overlap(self.live, self.offline)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "policy": self.policy,
            "events": self.events,
            "matches": self.matches,
            "clicks": self.clicks,
            "live_ctr": self.live.to_dict(),
            "offline_ctr": self.offline.to_dict(),
            "offline_matches": self.offline_matches,
            "agree": self.agree,
        }


def live_ctr(matches: int, clicks: int, level: float = 0.95) -> Estimate:
    """Clicks over matches with its interval; nan without matches.

    >>> live_ctr(matches=4, clicks=2).value
    0.5
    """
    if matches == 0:
        return _NO_ESTIMATE
    return dm(np.repeat([1.0, 0.0], [clicks, matches - clicks]), level)


def intervals_overlap(first: Estimate, second: Estimate) -> bool:
    """Whether two intervals share a point; never for an undefined (nan) one.

    >>> intervals_overlap(Estimate(0.5, 0.4, 0.6), Estimate(0.7, 0.6, 0.8))
    True
    """
    bounds = (first.ci_low, first.ci_high, second.ci_low, second.ci_high)
    if not all(math.isfinite(bound) for bound in bounds):
        return False
    return first.ci_low <= second.ci_high and second.ci_low <= first.ci_high


def compare(
    spec: ReplaySpec,
    cut: ReplayWindow,
    drive: DriveResult,
    variants: tuple[str, ...],
    policies: tuple[str, ...],
    on_progress: Callable[[int], None] | None = None,
) -> list[VariantComparison]:
    """Each variant's live figures and its policy's offline replay over the same events.

    ``cut.events`` are the driven events, in the order of ``drive``'s arrays;
    ``policies[i]`` is the policy type of ``variants[i]``.
    """
    comparisons = []
    for index, (variant, policy) in enumerate(zip(variants, policies, strict=True)):
        mine = drive.variant == index
        matches = int(drive.matched[mine].sum())
        clicks = int(drive.clicked[mine].sum())
        offline, offline_matches = _NO_ESTIMATE, 0.0
        if mine.any():
            propensities = cut.logged_propensities
            evaluation = prepare_evaluation(
                cut.events.rows(mine),
                cut.before,
                spec.k,
                logged_propensities=None if propensities is None else propensities[mine],
                min_propensity=spec.min_propensity,
            )
            figures = replay_policy(spec, evaluation, policy, index, on_progress)
            offline, offline_matches = figures.estimates["replay"], figures.matches
        comparisons.append(
            VariantComparison(
                variant=variant,
                policy=policy,
                events=int(mine.sum()),
                matches=matches,
                clicks=clicks,
                live=live_ctr(matches, clicks, spec.level),
                offline=offline,
                offline_matches=offline_matches,
            )
        )
    return comparisons
