"""From replay traces to figures: replay CTR, IPS, SNIPS, DM, DR, regret and stability.

Every figure is per slate slot, so all of them estimate the same thing: the
click rate of an item the policy recommends.

- *Replay CTR* (Li et al. 2011): the mean reward of the matched events.
  Unbiased only when the log was collected uniformly at random; MovieLens was
  not (people rate what they chose to watch), so read it with the others.
- *IPS / SNIPS*: event i has weight ``1{item_i in slate_i} / (k mu(item_i))``,
  with ``mu`` the logging propensity: logged, or else the item's share of the
  events before the window, floored at ``min_propensity`` (clipping bounds the
  weights and biases the estimate down for the rarest items).
- *DM / DR*: a reward model ``q(cohort, item)`` values each event's slate; DR
  corrects it with the weighted residual at the logged item. The model is fitted
  on the events before the window, or, when there are too few, cross-fitted on
  the window's two halves (each half valued by the model of the other).
- *Regret*: over the matched events, the best fixed item's click rate in
  hindsight (highest in-window rate among items with at least ``min_support``
  events) minus the reward; against the planted truth, when the data has one,
  the *pseudo-regret* uses true click probabilities instead.
- *Stability*: replay CTR per day, and its spread across days.

With several seeds each figure is the mean over seeds, and its interval is the
mean over seeds of each run's interval around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cineamate.offline.estimators import Estimate, dm, dr, effective_sample_size, ips, snips
from cineamate.offline.replay.engine import Trace, replay
from cineamate.offline.replay.log import ReplayLog
from cineamate.policies import Policy

__all__ = [
    "DEFAULT_MIN_PROPENSITY",
    "DEFAULT_MIN_SUPPORT",
    "Evaluation",
    "PolicyFigures",
    "SeedRun",
    "prepare_evaluation",
    "summarise",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_MIN_PROPENSITY = 1e-4
DEFAULT_MIN_SUPPORT = 50
# Fewer events than this before the window: fit on the window itself, cross-fitted.
_MIN_PRIOR_EVENTS = 10_000
# Pseudo-counts pulling an item's rate to the global one, and a cohort's to the item's.
_ITEM_STRENGTH = 20.0
_COHORT_STRENGTH = 20.0


@dataclass(frozen=True)
class Evaluation:
    """What the figures of every policy over one window need, computed once."""

    log: ReplayLog
    k: int
    logging_propensity: FloatArray
    clipped_events: int
    propensity_source: str
    # Stack of (cohorts, items) reward tables: the fitted model(s), then the truth if known.
    reward_models: FloatArray
    model_of_event: IntArray
    logged_prediction: FloatArray
    model_source: str
    best_item_ctr: float
    best_item_true_ctr: float | None

    @property
    def truth_index(self) -> int | None:
        return None if self.log.truth is None else self.reward_models.shape[0] - 1

    def replay(
        self,
        policy: Policy,
        rng: np.random.Generator,
        on_progress: Callable[[int], None] | None = None,
    ) -> Trace:
        """Replay ``policy`` over the window, valuing its slates with the reward models."""
        return replay(
            self.log,
            policy,
            self.k,
            rng,
            reward_models=self.reward_models,
            on_progress=on_progress,
        )


@dataclass(frozen=True)
class SeedRun:
    """One policy's trace under one seed, with the figures it gives."""

    seed: int
    trace: Trace
    estimates: dict[str, Estimate]
    effective_sample_size: float
    cumulative_reward: FloatArray
    cumulative_regret: FloatArray
    cumulative_pseudo_regret: FloatArray | None
    true_ctr: float | None


@dataclass(frozen=True)
class PolicyFigures:
    """A policy's figures over all seeds."""

    policy: str
    runs: list[SeedRun]
    estimates: dict[str, Estimate]
    matches: float
    effective_sample_size: float
    regret: float
    pseudo_regret: float | None
    true_ctr: float | None
    daily_ctr: dict[int, float]
    daily_ctr_spread: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "seeds": [run.seed for run in self.runs],
            "matches": self.matches,
            "effective_sample_size": self.effective_sample_size,
            "estimators": {name: e.to_dict() for name, e in self.estimates.items()},
            "regret": self.regret,
            "pseudo_regret": self.pseudo_regret,
            "true_ctr": self.true_ctr,
            "daily_ctr_spread": self.daily_ctr_spread,
        }


def prepare_evaluation(
    window_log: ReplayLog,
    prior_log: ReplayLog,
    k: int,
    *,
    logged_propensities: FloatArray | None = None,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    min_support: int = DEFAULT_MIN_SUPPORT,
) -> Evaluation:
    """Propensities, reward models and the best item of ``window_log``, from the events
    before it (``prior_log``) when there are enough of them."""
    items = window_log.item_positions()
    n_items = window_log.catalogue.size
    use_prior = len(prior_log) >= _MIN_PRIOR_EVENTS
    if logged_propensities is not None:
        raw = logged_propensities
        propensity_source = "logged"
    else:
        basis = prior_log if use_prior else window_log
        counts = np.bincount(basis.item_positions(), minlength=n_items)
        raw = (counts / max(len(basis), 1))[items]
        where = "the events before the window" if use_prior else "the window itself"
        propensity_source = f"item popularity in {where}"
    propensity = np.maximum(raw, min_propensity)
    clipped = int(np.count_nonzero(raw < min_propensity))

    if use_prior:
        tables = [_reward_table(prior_log)]
        model_of_event = np.zeros(len(window_log), dtype=np.int64)
        model_source = f"fitted on the {len(prior_log):,} events before the window"
    else:
        half = len(window_log) // 2
        first, second = window_log.rows(slice(0, half)), window_log.rows(slice(half, None))
        tables = [_reward_table(second), _reward_table(first)]
        model_of_event = (np.arange(len(window_log)) >= half).astype(np.int64)
        model_source = "cross-fitted on the window's two halves (too few events before it)"
    if window_log.truth is not None:
        tables.append(window_log.truth)
    models = np.stack(tables)
    logged_prediction = models[model_of_event, window_log.cohorts, items]

    counts = np.bincount(items, minlength=n_items)
    clicks = np.bincount(items, weights=window_log.rewards, minlength=n_items)
    supported = counts >= min_support
    rates = np.divide(clicks, counts, out=np.zeros(n_items), where=counts > 0)
    best_ctr = float(rates[supported].max()) if supported.any() else float(rates.max())
    best_true = None
    if window_log.truth is not None:
        mix = np.bincount(window_log.cohorts, minlength=window_log.truth.shape[0])
        best_true = float((mix / mix.sum() @ window_log.truth).max())
    return Evaluation(
        log=window_log,
        k=k,
        logging_propensity=propensity,
        clipped_events=clipped,
        propensity_source=propensity_source,
        reward_models=models,
        model_of_event=model_of_event,
        logged_prediction=logged_prediction,
        model_source=model_source,
        best_item_ctr=best_ctr,
        best_item_true_ctr=best_true,
    )


def seed_run(evaluation: Evaluation, seed: int, trace: Trace, level: float = 0.95) -> SeedRun:
    """The figures of one trace."""
    log, k = evaluation.log, evaluation.k
    matched = trace.matched
    rewards = log.rewards
    weights = matched / (k * evaluation.logging_propensity)
    direct = trace.slate_values[np.arange(len(log)), evaluation.model_of_event] / k
    estimates = {
        "replay": _mean(rewards[matched], level),
        "ips": ips(rewards, weights, level),
        "snips": snips(rewards, weights, level),
        "dm": dm(direct, level),
        "dr": dr(rewards, weights, direct, evaluation.logged_prediction, level),
    }
    earned = rewards[matched]
    cumulative_reward = np.cumsum(earned)
    cumulative_regret = np.cumsum(evaluation.best_item_ctr - earned)
    pseudo = None
    true_ctr = None
    truth_index = evaluation.truth_index
    if truth_index is not None and evaluation.best_item_true_ctr is not None:
        truth = evaluation.reward_models[truth_index]
        expected = truth[log.cohorts[matched], log.item_positions()[matched]]
        pseudo = np.cumsum(evaluation.best_item_true_ctr - expected)
        true_ctr = float(trace.slate_values[:, truth_index].mean() / k)
    return SeedRun(
        seed=seed,
        trace=trace,
        estimates=estimates,
        effective_sample_size=effective_sample_size(weights),
        cumulative_reward=cumulative_reward,
        cumulative_regret=cumulative_regret,
        cumulative_pseudo_regret=pseudo,
        true_ctr=true_ctr,
    )


def summarise(evaluation: Evaluation, policy: str, runs: Sequence[SeedRun]) -> PolicyFigures:
    """A policy's figures over its seeds."""
    names = runs[0].estimates.keys()
    days = evaluation.log.days
    matched_days = np.concatenate([days[run.trace.matched] for run in runs])
    earned = np.concatenate([evaluation.log.rewards[run.trace.matched] for run in runs])
    day_ids, inverse = np.unique(matched_days, return_inverse=True)
    per_day = np.bincount(inverse, weights=earned) / np.maximum(np.bincount(inverse), 1)
    daily = {int(day): float(ctr) for day, ctr in zip(day_ids, per_day, strict=True)}
    return PolicyFigures(
        policy=policy,
        runs=list(runs),
        estimates={name: _combine([run.estimates[name] for run in runs]) for name in names},
        matches=float(np.mean([run.trace.matched.sum() for run in runs])),
        effective_sample_size=float(np.mean([run.effective_sample_size for run in runs])),
        regret=float(np.mean([_last(run.cumulative_regret) for run in runs])),
        pseudo_regret=_mean_or_none(
            [
                _last(r.cumulative_pseudo_regret)
                for r in runs
                if r.cumulative_pseudo_regret is not None
            ]
        ),
        true_ctr=_mean_or_none([run.true_ctr for run in runs if run.true_ctr is not None]),
        daily_ctr=daily,
        daily_ctr_spread=float(np.std(per_day)) if per_day.size > 1 else math.nan,
    )


def _reward_table(log: ReplayLog) -> FloatArray:
    """Smoothed click rate per (cohort, item): the item's rate pulled to the global rate,
    the cohort's rate pulled to the item's."""
    n_items, n_cohorts = log.catalogue.size, len(log.cohort_labels)
    items = log.item_positions()
    overall = float(log.rewards.mean()) if len(log) else 0.0
    item_n = np.bincount(items, minlength=n_items)
    item_s = np.bincount(items, weights=log.rewards, minlength=n_items)
    item_rate = (item_s + _ITEM_STRENGTH * overall) / (item_n + _ITEM_STRENGTH)
    cell = log.cohorts * n_items + items
    cell_n = np.bincount(cell, minlength=n_cohorts * n_items).reshape(n_cohorts, n_items)
    cell_s = np.bincount(cell, weights=log.rewards, minlength=n_cohorts * n_items)
    cell_s = cell_s.reshape(n_cohorts, n_items)
    result: FloatArray = (cell_s + _COHORT_STRENGTH * item_rate) / (cell_n + _COHORT_STRENGTH)
    return result


def _mean(values: FloatArray, level: float) -> Estimate:
    """A plain mean with its normal interval: the same arithmetic as DM's."""
    if values.size == 0:
        return Estimate(math.nan, math.nan, math.nan)
    return dm(values, level)


def _combine(estimates: list[Estimate]) -> Estimate:
    value = float(np.mean([e.value for e in estimates]))
    low = float(np.mean([e.value - e.ci_low for e in estimates]))
    high = float(np.mean([e.ci_high - e.value for e in estimates]))
    return Estimate(value, value - low, value + high)


def _last(values: FloatArray) -> float:
    return float(values[-1]) if values.size else 0.0


def _mean_or_none(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None
