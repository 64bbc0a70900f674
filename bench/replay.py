"""Speed of the offline replay over the whole synthetic MovieLens 1M, against MABWiser.

The figure the spec bounds is ``cineamate replay --window all``: Thompson,
epsilon-greedy and UCB1 over the full-size synthetic set (1,000,209 events,
3,706 items), slates of k = 10, one seed. The same-run baseline is MABWiser
driven through the same rejection loop on the same events. It is slower by
orders of magnitude, so it runs on a time-bounded prefix of the log and its
time is extrapolated linearly to the whole log; our replay is also timed on
that prefix, so one ratio compares like with like.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench._registry import Details, Figures, RunOptions, add_ratio, add_target, benchmark
from bench._timing import summarise, time_calls
from cineamate.offline.movielens import ensure_synthetic
from cineamate.offline.replay.engine import replay
from cineamate.offline.replay.evaluate import prepare_evaluation
from cineamate.offline.replay.log import ReplayLog
from cineamate.offline.replay.run import ReplaySpec, run_replay
from cineamate.offline.replay.sources import load_log
from cineamate.offline.replay.window import choose_window
from cineamate.policies import make_policy
from cineamate.policies.ranking import top_k

DATA_SEED = 0
POLICY_SEED = 0
SLATE_SIZE = 10
POLICIES = ("thompson", "egreedy", "ucb1")
REPLAY_TARGET_SECONDS = 60.0
QUICK_EVENTS = 100_000
CACHE = Path(tempfile.gettempdir()) / "cineamate-bench-replay"
_REPLAY_SPEC = (
    "issue 8: Thompson, epsilon-greedy and UCB1 over the whole synthetic ML-1M log "
    "(--window all, 3,706 items, k = 10) in at most 60 s"
)
_COLUMNAR_NAME = "synthetic.npz"


def _synthetic_data(seed: int) -> tuple[Path, Path]:
    """The folder of .dat files and the columnar file of the synthetic set, made once per seed."""
    folder = CACHE / f"synthetic-ml-1m-seed{seed}"
    return folder, ensure_synthetic(folder, seed=seed, columnar_name=_COLUMNAR_NAME)


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    return summarise(time_calls(call, repeats)).median_us / 1e6


def _prefix_window(log: ReplayLog, events: int) -> str:
    """A ``START:END`` window of whole days from the first event holding at least ``events``."""
    days = log.days
    first = int(days[0])
    last = int(days[min(events, len(log)) - 1])
    epoch = dt.date(1970, 1, 1)
    start = epoch + dt.timedelta(days=first)
    end = epoch + dt.timedelta(days=last + 1)
    return f"{start.isoformat()}:{end.isoformat()}"


def _per_policy_seconds(log: ReplayLog, window_spec: str) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of ``Evaluation.replay`` per policy, prepared as in ``run_replay``."""
    window = choose_window(log, window_spec)
    in_window = log.between(window.start, window.end)
    before = log.between(int(log.times[0]), window.start)
    evaluation = prepare_evaluation(in_window, before, SLATE_SIZE)
    seconds = {}
    for index, name in enumerate(POLICIES):
        # The generator run_replay gives policy ``index`` under seed 0: the same path.
        rng = np.random.default_rng([0, index])
        started, cpu_started = time.perf_counter(), time.process_time()
        evaluation.replay(make_policy(name), rng)
        seconds[name] = (time.perf_counter() - started, time.process_time() - cpu_started)
    return seconds


def _mabwiser_policies() -> dict[str, Any]:
    """MABWiser's counterparts of the three policies, with our factory defaults' parameters."""
    # Imported here: mabwiser pulls in pandas and scikit-learn (2-3 s) that `--list` and the
    # other benchmarks should not pay.
    from mabwiser.mab import LearningPolicy

    return {
        "thompson": LearningPolicy.ThompsonSampling(),
        "egreedy": LearningPolicy.EpsilonGreedy(epsilon=0.1),
        "ucb1": LearningPolicy.UCB1(alpha=1.0),
    }


def _mabwiser_prefix(
    log: ReplayLog, name: str, learning_policy: Any, budget_seconds: float
) -> dict[str, float]:
    """Rejection replay through MABWiser from the first event until ``budget_seconds`` pass.

    Each event: ``predict_expectations`` over every arm, the top 10 (ties at random, the
    ranking our policies use); on a match ``partial_fit`` with the logged item and reward.
    """
    from mabwiser.mab import MAB

    arm_ids = log.catalogue
    mab = MAB(arms=arm_ids.tolist(), learning_policy=learning_policy, seed=POLICY_SEED)
    # The public cold start: every arm at its prior (Beta(1, 1); mean 0 for the others).
    mab.fit(np.empty(0, dtype=np.int64), np.empty(0))
    # MABWiser's UCB1 scores an unplayed arm 0; Auer's UCB1 (and ours) plays it first.
    unplayed_first = name == "ucb1"
    played = np.zeros(arm_ids.size, dtype=bool)
    positions = log.item_positions()
    rng = np.random.default_rng(POLICY_SEED)
    matches = 0
    fit_seconds = 0.0
    clock = time.perf_counter
    started = clock()
    deadline = started + budget_seconds
    event = 0
    while event < len(log) and clock() < deadline:
        expectations = mab.predict_expectations()
        scores = np.fromiter(expectations.values(), dtype=np.float64, count=arm_ids.size)
        if unplayed_first:
            scores[~played] = np.inf
        slate = top_k(scores, SLATE_SIZE, rng)[0]
        position = positions[event]
        if (slate == position).any():
            fit_started = clock()
            mab.partial_fit(log.items[event : event + 1], log.rewards[event : event + 1])
            fit_seconds += clock() - fit_started
            played[position] = True
            matches += 1
        event += 1
    seconds = clock() - started
    return {"events": event, "seconds": seconds, "matches": matches, "fit_seconds": fit_seconds}


def _ours_prefix(log: ReplayLog, name: str, index: int, repeats: int) -> dict[str, float]:
    """``engine.replay`` of the same policy on the same prefix, without slate values."""
    matches = 0

    def once() -> None:
        nonlocal matches
        rng = np.random.default_rng([0, index])
        matches = int(replay(log, make_policy(name), SLATE_SIZE, rng).matched.sum())

    return {"seconds": _median_seconds(once, repeats), "matches": matches}


@benchmark("replay")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """Replay of Thompson, egreedy and UCB1 over the whole synthetic ML-1M log, vs MABWiser."""
    runs = options.repeats(3, 1)
    budget_seconds = options.repeats(25, 3)
    load_average_start = os.getloadavg()[0]
    folder, columnar = _synthetic_data(DATA_SEED)
    figures: Figures = {}
    figures["load_seconds_dat"] = _median_seconds(partial(load_log, folder), runs)
    figures["load_seconds_npz"] = _median_seconds(partial(load_log, columnar), runs)
    log = load_log(columnar).log
    window = "all" if not options.quick else _prefix_window(log, QUICK_EVENTS)

    totals, cpu_totals, matches = [], [], {}
    per_policy: dict[str, list[float]] = {name: [] for name in POLICIES}
    per_policy_cpu: dict[str, list[float]] = {name: [] for name in POLICIES}
    window_events = 0
    for _ in range(runs):
        cpu_started = time.process_time()
        result = run_replay(
            ReplaySpec(data=columnar, window=window, policies=POLICIES, baselines=(), seeds=1)
        )
        cpu_totals.append(time.process_time() - cpu_started)
        totals.append(result.seconds)
        window_events = len(result.evaluation.log)
        matches = {figure.policy: figure.matches for figure in result.figures}
        for name, (seconds, cpu_seconds) in _per_policy_seconds(log, window).items():
            per_policy[name].append(seconds)
            per_policy_cpu[name].append(cpu_seconds)

    figures["replay_seconds_total"] = float(np.median(totals))
    figures["replay_events_per_s"] = window_events * len(POLICIES) / figures["replay_seconds_total"]
    for name in POLICIES:
        figures[f"replay_seconds_{name}"] = float(np.median(per_policy[name]))

    prefixes = {}
    modelled = 0.0
    for index, (name, learning_policy) in enumerate(_mabwiser_policies().items()):
        theirs = _mabwiser_prefix(log, name, learning_policy, budget_seconds)
        ours = _ours_prefix(log.rows(slice(0, int(theirs["events"]))), name, index, runs)
        prefixes[name] = {"events": theirs["events"], "mabwiser": theirs, "cineamate": ours}
        figures[f"mabwiser_events_per_s_{name}"] = theirs["events"] / theirs["seconds"]
        figures[f"mabwiser_prefix_ms_{name}"] = theirs["seconds"] * 1e3
        figures[f"replay_prefix_ms_{name}"] = ours["seconds"] * 1e3
        modelled += _modelled_seconds(theirs, window_events, matches[name])

    extrapolated = sum(
        window_events / figures[f"mabwiser_events_per_s_{name}"] for name in POLICIES
    )
    figures["mabwiser_extrapolated_seconds"] = extrapolated
    figures["mabwiser_events_per_s"] = window_events * len(POLICIES) / extrapolated
    figures["speedup_vs_mabwiser"] = extrapolated / figures["replay_seconds_total"]
    figures["speedup_vs_mabwiser_prefix"] = sum(
        figures[f"mabwiser_prefix_ms_{name}"] for name in POLICIES
    ) / sum(figures[f"replay_prefix_ms_{name}"] for name in POLICIES)

    details: Details = {
        "config": {
            "data": f"synthetic MovieLens 1M, seed {DATA_SEED}, cached in {folder}",
            "window": window,
            "window_events": window_events,
            "catalogue_items": int(log.catalogue.size),
            "slate_size": SLATE_SIZE,
            "policies": list(POLICIES),
            "seeds": 1,
            "runs": runs,
            "mabwiser_budget_seconds_per_policy": budget_seconds,
            "mabwiser": (
                "MAB(arms=the 3,706 item ids, seed 0), fit on no events (every arm at its "
                "prior); per event predict_expectations, top 10 with random tie-breaks, "
                "partial_fit on a match. ThompsonSampling() (Beta(1, 1) prior, as ours), "
                "EpsilonGreedy(epsilon=0.1) (a uniform slate with probability 0.1, else "
                "the 10 best means, unplayed arms at mean 0, as ours), UCB1(alpha=1) "
                "(mean + sqrt(2 ln N / n), as ours; unplayed arms ranked first, as ours, "
                "where MABWiser alone scores them 0)"
            ),
            "extrapolation": (
                "mabwiser_extrapolated_seconds = sum over policies of window_events / "
                "mabwiser_events_per_s_<policy>, the rate measured on the policy's prefix; "
                "mabwiser_modelled_seconds instead prices the prefix's time per event "
                "without partial_fit and its time per partial_fit at our replay's matches"
            ),
        },
        "replay_seconds_runs": totals,
        "replay_cpu_seconds_runs": cpu_totals,
        "replay_seconds_per_policy_runs": per_policy,
        "replay_cpu_seconds_per_policy_runs": per_policy_cpu,
        "matches": matches,
        "prefixes": prefixes,
        "mabwiser_modelled_seconds": modelled,
        "load_average_1m": {"start": load_average_start, "end": os.getloadavg()[0]},
    }
    add_target(details, figures, "replay_seconds_total", REPLAY_TARGET_SECONDS, _REPLAY_SPEC)
    for name in POLICIES:
        add_ratio(figures, details, f"replay_prefix_ms_{name}", f"mabwiser_prefix_ms_{name}")
    return _ordered(figures), details


def _modelled_seconds(prefix: dict[str, float], events: int, matches: float) -> float:
    """MABWiser's time over ``events`` with ``matches`` partial fits, priced from its prefix."""
    per_event = (prefix["seconds"] - prefix["fit_seconds"]) / prefix["events"]
    per_fit = prefix["fit_seconds"] / prefix["matches"] if prefix["matches"] else 0.0
    return per_event * events + per_fit * matches


def _ordered(figures: Figures) -> Figures:
    """The bounded figure and the whole-log comparison first, then the prefixes and loads."""
    head = [
        "replay_seconds_total",
        "replay_events_per_s",
        *(f"replay_seconds_{name}" for name in POLICIES),
        "speedup_vs_mabwiser",
        "mabwiser_extrapolated_seconds",
        "mabwiser_events_per_s",
        *(f"mabwiser_events_per_s_{name}" for name in POLICIES),
        "speedup_vs_mabwiser_prefix",
    ]
    return {name: figures[name] for name in head} | figures
