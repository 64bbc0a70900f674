"""Replay figures: unbiased under known logging, regret arithmetic, sources stated.

The coverage test replays 150 simulated logs (fixed seeds) with uniform logging
and a planted truth, and checks that IPS and DR are unbiased for the true click
rate of the slates the policy showed, and that their intervals cover it.
"""

from __future__ import annotations

import numpy as np
import pytest

from cineamate.offline.replay.evaluate import prepare_evaluation, seed_run, summarise
from cineamate.offline.replay.log import ReplayLog
from cineamate.policies import make_policy

RUNS = 150
N_ITEMS = 30


def _truth_log(seed: int, n_events: int = 3_000, with_truth: bool = True) -> ReplayLog:
    rng = np.random.default_rng([seed, 99])
    truth = np.random.default_rng(0).uniform(0.05, 0.9, (2, N_ITEMS))
    items = rng.integers(0, N_ITEMS, n_events)  # uniform logging
    cohorts = rng.integers(0, 2, n_events)
    return ReplayLog.from_arrays(
        times=np.arange(n_events),
        users=rng.integers(0, 500, n_events),
        items=items,
        rewards=(rng.random(n_events) < truth[cohorts, items]).astype(float),
        cohorts=cohorts,
        cohort_labels=("a", "b"),
        catalogue=np.arange(N_ITEMS),
        truth=truth if with_truth else None,
    )


@pytest.mark.slow
@pytest.mark.parametrize("policy_type", ["random", "popularity"])
def test_ips_and_dr_are_unbiased_and_cover_the_true_value(policy_type: str) -> None:
    covered = {"ips": 0, "dr": 0, "snips": 0}
    errors: dict[str, list[float]] = {name: [] for name in covered}
    for seed in range(RUNS):
        log = _truth_log(seed)
        evaluation = prepare_evaluation(
            log, log.rows(slice(0, 0)), 5, logged_propensities=np.full(len(log), 1 / N_ITEMS)
        )
        trace = evaluation.replay(make_policy(policy_type), np.random.default_rng(seed))
        run = seed_run(evaluation, seed, trace)
        assert run.true_ctr is not None
        for name in covered:
            estimate = run.estimates[name]
            covered[name] += estimate.ci_low <= run.true_ctr <= estimate.ci_high
            errors[name].append(estimate.value - run.true_ctr)
    for name in covered:
        bias = np.array(errors[name])
        assert abs(bias.mean()) <= 3 * bias.std(ddof=1) / np.sqrt(RUNS), name
        # Nominal 95%; 3 binomial standard deviations over 150 runs is about 5 points.
        assert covered[name] / RUNS >= 0.95 - 0.054, (name, covered[name])


def test_regret_adds_up_over_the_matched_events() -> None:
    log = _truth_log(1)
    evaluation = prepare_evaluation(log, log.rows(slice(0, 0)), 5)
    trace = evaluation.replay(make_policy("egreedy"), np.random.default_rng(0))
    run = seed_run(evaluation, 0, trace)
    earned = log.rewards[trace.matched]
    assert run.cumulative_regret[-1] == pytest.approx(
        trace.matched.sum() * evaluation.best_item_ctr - earned.sum()
    )
    assert run.cumulative_pseudo_regret is not None
    figures = summarise(evaluation, "egreedy", [run])
    assert figures.matches == trace.matched.sum()
    assert figures.estimates["replay"].value == pytest.approx(earned.mean())
    assert sum(figures.daily_ctr.values()) > 0


def test_clipped_propensities_are_counted_and_floored() -> None:
    log = _truth_log(2, with_truth=False)
    logged = np.where(np.arange(len(log)) % 10 == 0, 1e-6, 1 / N_ITEMS)
    evaluation = prepare_evaluation(
        log, log.rows(slice(0, 0)), 5, logged_propensities=logged, min_propensity=1e-3
    )
    assert evaluation.clipped_events == int((logged < 1e-3).sum())
    assert evaluation.logging_propensity.min() == 1e-3
    assert evaluation.propensity_source == "logged"
    assert evaluation.truth_index is None


def test_the_model_comes_from_before_the_window_when_there_is_enough() -> None:
    log = _truth_log(3, n_events=30_000)
    window, before = log.rows(slice(20_000, None)), log.rows(slice(0, 20_000))
    evaluation = prepare_evaluation(window, before, 5)
    assert "before the window" in evaluation.model_source
    assert "before the window" in evaluation.propensity_source
    assert np.all(evaluation.model_of_event == 0)

    alone = prepare_evaluation(window, log.rows(slice(0, 0)), 5)
    assert "cross-fitted" in alone.model_source
    half = len(window) // 2
    assert np.all(alone.model_of_event[:half] == 0) and np.all(alone.model_of_event[half:] == 1)
    # Each half is valued by the model fitted on the other: flipping a reward in the first
    # half leaves the first half's predictions alone.
    rewards = window.rewards.copy()
    rewards[0] = 1.0 - rewards[0]
    flipped = prepare_evaluation(
        ReplayLog.from_arrays(
            times=window.times,
            users=window.users,
            items=window.items,
            rewards=rewards,
            cohorts=window.cohorts,
            cohort_labels=window.cohort_labels,
            catalogue=window.catalogue,
            truth=window.truth,
        ),
        log.rows(slice(0, 0)),
        5,
    )
    assert np.array_equal(flipped.logged_prediction[:half], alone.logged_prediction[:half])
    assert not np.array_equal(flipped.logged_prediction[half:], alone.logged_prediction[half:])
