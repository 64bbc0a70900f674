"""In-process speed of the bandit policies: select, choose, the Thompson per-state set-up, update.

The catalogue is MovieLens-1M sized (3,706 arms, ids 1..3706) with slates of
10, on two states: ``cold`` (no observations) and ``warm`` (heavy-tailed pulls,
a fixed seed). The same-run baseline for a decision is one ``rng.beta(alpha,
beta)`` draw over every arm, which is what a straightforward Thompson Sampling
pays per decision; for the update it is the two ``np.bincount`` calls any
update must make.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import numpy.typing as npt

from bench._registry import Details, Figures, RunOptions, add_ratio, add_target, benchmark
from bench._timing import Summary, summarise, time_calls
from cineamate.policies import POLICY_TYPES, ArmState, make_policy

N_ARMS = 3_706
SLATE_SIZE = 10
UPDATE_BATCH = 10_000
SEED = 1_000_209
SELECT_TARGET_US = 200.0
UPDATE_TARGET_US = 1_000.0
_SELECT_SPEC = "spec: Thompson select over 3,706 arms with k=10, median <= 200 us"
_UPDATE_SPEC = "spec: update of 10,000 rewards <= 1 ms"

IntArray = npt.NDArray[np.int64]


def _cold_state() -> ArmState:
    return ArmState.empty(np.arange(1, N_ARMS + 1))


def _warm_state(seed: int) -> ArmState:
    """Heavy-tailed exposure (most films rarely shown, a few shown a lot), CTRs around 10%."""
    rng = np.random.default_rng(seed)
    pulls = np.floor(rng.pareto(1.2, N_ARMS) * 20)
    click_rates = rng.beta(1.0, 9.0, N_ARMS)
    successes = rng.binomial(pulls.astype(np.int64), click_rates).astype(np.float64)
    return ArmState(np.arange(1, N_ARMS + 1), pulls, successes, version=1)


def _describe_state(state: ArmState) -> dict[str, float]:
    return {
        "total_pulls": state.total_pulls,
        "total_successes": float(state.successes.sum()),
        "max_pulls": float(state.pulls.max()),
        "median_pulls": float(np.median(state.pulls)),
        "unplayed_share": float(np.mean(state.pulls == 0)),
    }


def _fresh_copy(state: ArmState) -> ArmState:
    """An equal state that is a new object, so nothing cached on the original applies."""
    return ArmState(state.arm_ids, state.pulls, state.successes, state.version)


def _first_call_us(state: ArmState, call: Callable[[ArmState], object], states: int) -> Summary:
    """Time of the first call on each of ``states`` fresh copies: the one-off per-state cost."""
    samples = []
    for _ in range(states):
        fresh = _fresh_copy(state)
        samples.append(int(time_calls(partial(call, fresh), 1)[0]))
    return summarise(np.asarray(samples, dtype=np.int64))


class _BetaBaseline:
    """One ``rng.beta`` draw over all arms per state, timed in blocks between the policy loops.

    The shared machine drifts by tens of percent within a run; pooling blocks taken next to
    every policy loop makes a drift weigh on both sides of each ratio.
    """

    def __init__(self, states: dict[str, ArmState], block_size: int) -> None:
        self._posteriors = {
            name: (1.0 + state.successes, 1.0 + state.pulls - state.successes)
            for name, state in states.items()
        }
        self._rng = np.random.default_rng(SEED)
        self._block_size = block_size
        self.blocks: dict[str, list[IntArray]] = {name: [] for name in states}

    def time_block(self, state_name: str) -> None:
        alpha, beta = self._posteriors[state_name]
        self.blocks[state_name].append(
            time_calls(partial(self._rng.beta, alpha, beta), self._block_size)
        )

    def summary(self, state_name: str) -> Summary:
        return summarise(np.concatenate(self.blocks[state_name]))


def _update_loops(state: ArmState, updates: int) -> tuple[Summary, Summary]:
    """``state.updated`` with 10,000 click rewards, and the two bincounts it cannot avoid."""
    rng = np.random.default_rng(SEED + 1)
    arm_ids = rng.integers(1, N_ARMS + 1, UPDATE_BATCH)
    rewards = (rng.random(UPDATE_BATCH) < 0.1).astype(np.float64)
    positions = state.index_of(arm_ids)  # also builds the id lookup, which successors inherit
    update = time_calls(partial(state.updated, arm_ids, rewards), updates)
    bincounts = time_calls(
        lambda: (
            state.pulls + np.bincount(positions, minlength=N_ARMS),
            state.successes + np.bincount(positions, weights=rewards, minlength=N_ARMS),
        ),
        updates,
    )
    return summarise(update), summarise(bincounts)


def _baseline_of(figure: str) -> str:
    """The same-run baseline a policy figure is divided by: same state, same statistic."""
    tail = "p99_" if "_p99_" in figure else ""
    if figure.startswith("policy_update_10k"):
        return f"baseline_bincount_10k_{tail}us"
    suffix = "" if figure.endswith("_warm") else "_cold"
    return f"baseline_beta_draw_3706_{tail}us{suffix}"


@benchmark("policies")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """Policy select/choose latency, Thompson per-state set-up, batch update, vs numpy baselines."""
    calls = options.repeats(5_000, 500)
    fresh_states = options.repeats(10, 3)
    updates = options.repeats(500, 50)
    states = {"cold": _cold_state(), "warm": _warm_state(SEED)}
    baseline = _BetaBaseline(states, block_size=max(calls // len(POLICY_TYPES), 20))
    figures: Figures = {}
    timings: dict[str, dict[str, float | int]] = {}

    def record(name: str, summary: Summary, *, p99: bool = True) -> None:
        timings[name] = summary.as_dict()
        figures[name] = summary.median_us
        if p99:
            figures[name.replace("_us", "_p99_us", 1)] = summary.p99_us

    for policy_type in POLICY_TYPES:
        policy = make_policy(policy_type)
        for state_name, state in states.items():
            baseline.time_block(state_name)
            rng = np.random.default_rng(SEED)
            # The warm-up call fills the per-state caches (the Thompson threshold and propensities).
            policy.select(state, SLATE_SIZE, rng)
            select = time_calls(partial(policy.select, state, SLATE_SIZE, rng), calls)
            choose = time_calls(partial(policy.choose, state, SLATE_SIZE, rng), calls)
            record(f"policy_select_us_{policy_type}_{state_name}", summarise(select))
            record(f"policy_choose_us_{policy_type}_{state_name}", summarise(choose))

    thompson = make_policy("thompson")
    setup_rng = np.random.default_rng(SEED)
    for state_name, state in states.items():
        per_state = _first_call_us(
            state, lambda s: thompson.select(s, SLATE_SIZE, setup_rng), fresh_states
        )
        threshold = _first_call_us(
            state, lambda s: thompson.choose(s, SLATE_SIZE, setup_rng), fresh_states
        )
        record(f"policy_thompson_per_state_us_{state_name}", per_state, p99=False)
        record(f"policy_thompson_threshold_us_{state_name}", threshold, p99=False)

    update, bincounts = _update_loops(states["warm"], updates)
    record("policy_update_10k_us", update)
    record("baseline_bincount_10k_us", bincounts)

    for state_name in states:
        baseline.time_block(state_name)
        suffix = "" if state_name == "warm" else f"_{state_name}"
        record(f"baseline_beta_draw_3706_us{suffix}", baseline.summary(state_name))

    details: Details = {
        "config": {
            "n_arms": N_ARMS,
            "slate_size": SLATE_SIZE,
            "seed": SEED,
            "calls_per_loop": calls,
            "fresh_states": fresh_states,
            "update_batch": UPDATE_BATCH,
            "updates": updates,
            "warm_state": "pulls floor(pareto(1.2) * 20), successes binomial(pulls, beta(1, 9))",
            "policy_params": "factory defaults (egreedy epsilon 0.1; thompson Beta(1, 1) prior)",
        },
        "states": {name: _describe_state(state) for name, state in states.items()},
        "clock_overhead_us": summarise(time_calls(lambda: None, 1_000)).median_us,
        "baseline_beta_draw_block_medians_us": {
            name: [float(np.median(block)) / 1_000 for block in blocks]
            for name, blocks in baseline.blocks.items()
        },
        "timings": timings,
    }
    for figure in [name for name in figures if name.startswith("policy_")]:
        add_ratio(figures, details, figure, _baseline_of(figure))
    for state_name in states:
        figure = f"policy_select_us_thompson_{state_name}"
        add_target(details, figures, figure, SELECT_TARGET_US, _SELECT_SPEC)
    add_target(details, figures, "policy_update_10k_us", UPDATE_TARGET_US, _UPDATE_SPEC)
    return _ordered(figures), details


def _ordered(figures: Figures) -> Figures:
    """Baselines first, then the policy figures in the order they were measured."""
    baselines = {name: value for name, value in figures.items() if name.startswith("baseline_")}
    return baselines | {name: value for name, value in figures.items() if name not in baselines}
