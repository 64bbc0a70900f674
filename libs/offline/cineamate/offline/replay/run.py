"""``cineamate replay``: pick the window, replay every policy under every seed, evaluate.

The policies come from ``cineamate.policies`` (the code the online services
run), built with the same factory and default parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import InvalidInput
from cineamate.offline.logged import ColumnMap
from cineamate.offline.movielens import CLICK_RATING
from cineamate.offline.replay.evaluate import (
    DEFAULT_MIN_PROPENSITY,
    Evaluation,
    PolicyFigures,
    prepare_evaluation,
    seed_run,
    summarise,
)
from cineamate.offline.replay.log import ReplayLog
from cineamate.offline.replay.sources import load_log
from cineamate.offline.replay.window import (
    DEFAULT_MIN_COVERAGE,
    DEFAULT_WINDOW_DAYS,
    Window,
    choose_window,
)
from cineamate.policies import POLICY_TYPES, make_policy

__all__ = [
    "ReplayResult",
    "ReplaySpec",
    "ReplayWindow",
    "load_window",
    "progress_counter",
    "replay_policy",
    "run_replay",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_POLICIES = ("thompson", "egreedy", "ucb1")
DEFAULT_BASELINES = ("random", "popularity")


@dataclass(frozen=True)
class ReplaySpec:
    """Everything a replay run is asked to do."""

    data: Path
    window: str = "auto"
    policies: tuple[str, ...] = DEFAULT_POLICIES
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    seeds: int = 5
    k: int = 10
    click_rating: int = CLICK_RATING
    top_items: int | None = None
    window_days: int = DEFAULT_WINDOW_DAYS
    min_coverage: float = DEFAULT_MIN_COVERAGE
    min_propensity: float = DEFAULT_MIN_PROPENSITY
    level: float = 0.95
    columns: ColumnMap | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (*self.policies, *self.baselines):
            if name not in POLICY_TYPES:
                known = ", ".join(POLICY_TYPES)
                raise InvalidInput(f"unknown policy {name!r}; one of {known}", field="policies")
        if self.seeds < 1:
            raise InvalidInput("--seeds must be at least 1", field="seeds")
        if self.k < 1:
            raise InvalidInput("--k must be at least 1", field="k")


@dataclass(frozen=True)
class ReplayResult:
    """The window, how it was evaluated, and every policy's figures."""

    spec: ReplaySpec
    source: str
    window: Window
    evaluation: Evaluation
    figures: list[PolicyFigures]
    seconds: float
    events_per_second: float


@dataclass(frozen=True)
class ReplayWindow:
    """The log a spec names, cut at its window: what every replay of it starts from."""

    source: str
    window: Window
    # The window's events, and the events before it (for propensities and reward models).
    events: ReplayLog
    before: ReplayLog
    logged_propensities: FloatArray | None


def load_window(spec: ReplaySpec) -> ReplayWindow:
    """Load ``spec``'s log, restrict its catalogue, and choose and cut its window."""
    loaded = load_log(spec.data, spec.columns, spec.click_rating)
    log = loaded.log
    if spec.top_items is not None:
        log = log.restricted_to(_most_rated(log, spec.top_items))
    window = choose_window(log, spec.window, spec.window_days, spec.min_coverage)
    in_window, before = _split(log, window)
    if len(in_window) == 0:
        raise InvalidInput(f"no events in the window {window.label()}", field="window")
    propensities = None
    if loaded.logged_propensities is not None:
        low, high = np.searchsorted(log.times, [window.start, window.end])
        propensities = loaded.logged_propensities[low:high]
    return ReplayWindow(loaded.description, window, in_window, before, propensities)


def replay_policy(
    spec: ReplaySpec,
    evaluation: Evaluation,
    name: str,
    index: int,
    on_progress: Callable[[int], None] | None = None,
) -> PolicyFigures:
    """Replay policy ``name`` (the ``index``-th of the run) under each of ``spec.seeds``."""
    runs = []
    for seed in range(spec.seeds):
        policy = make_policy(name, spec.params.get(name))
        rng = np.random.default_rng([seed, index])
        trace = evaluation.replay(policy, rng, on_progress=on_progress)
        runs.append(seed_run(evaluation, seed, trace, spec.level))
    return summarise(evaluation, name, runs)


def run_replay(
    spec: ReplaySpec, on_progress: Callable[[int, int], None] | None = None
) -> ReplayResult:
    """Run ``spec``; ``on_progress(done, total)`` is called as events are replayed."""
    cut = load_window(spec)
    evaluation = prepare_evaluation(
        cut.events,
        cut.before,
        spec.k,
        logged_propensities=cut.logged_propensities,
        min_propensity=spec.min_propensity,
    )
    names = (*spec.policies, *spec.baselines)
    total = len(cut.events) * len(names) * spec.seeds
    advance = progress_counter(total, on_progress)
    started = time.perf_counter()
    figures = [
        replay_policy(spec, evaluation, name, index, advance) for index, name in enumerate(names)
    ]
    seconds = time.perf_counter() - started
    return ReplayResult(
        spec=spec,
        source=cut.source,
        window=cut.window,
        evaluation=evaluation,
        figures=figures,
        seconds=seconds,
        events_per_second=total / seconds if seconds > 0 else float("inf"),
    )


def progress_counter(
    total: int, on_progress: Callable[[int, int], None] | None
) -> Callable[[int], None]:
    """A callback taking events done since its last call that reports ``(done, total)``."""
    done = 0

    def advance(events: int) -> None:
        nonlocal done
        done += events
        if on_progress is not None:
            on_progress(done, total)

    return advance


def _split(log: ReplayLog, window: Window) -> tuple[ReplayLog, ReplayLog]:
    low, high = np.searchsorted(log.times, [window.start, window.end])
    return log.rows(slice(int(low), int(high))), log.rows(slice(0, int(low)))


def _most_rated(log: ReplayLog, count: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    if count < 1:
        raise InvalidInput("--top-items must be at least 1", field="top_items")
    events = np.bincount(log.item_positions(), minlength=log.catalogue.size)
    return log.catalogue[np.argsort(-events, kind="stable")[:count]]
