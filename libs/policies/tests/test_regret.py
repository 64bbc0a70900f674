"""On a 10-armed Bernoulli bandit, Thompson Sampling learns fastest and UCB1's and Thompson's
regret grows sub-linearly while epsilon-greedy's keeps growing linearly.

Setup: arm means ``linspace(0.1, 0.5, 10)``, one arm per step (k = 1), 20,000 steps, state
updated after every step, 10 seeds per policy. The policy draws from ``default_rng(seed)``
and rewards from a separate ``default_rng(10_000 + seed)``. Regret after T steps is the sum
over steps of (best mean - mean of the chosen arm), averaged over the seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cineamate.policies import ArmState, make_policy

ARM_MEANS = np.linspace(0.1, 0.5, 10)
STEPS = 20_000
SEEDS = range(10)
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "thompson": ("thompson", {}),
    "ucb1": ("ucb1", {}),
    "egreedy(0.1)": ("egreedy", {"epsilon": 0.1}),
}

pytestmark = pytest.mark.slow

IntArray = npt.NDArray[np.int64]


def _play(policy_type: str, params: dict[str, Any], seed: int) -> IntArray:
    """The arm chosen at each step of one run."""
    policy = make_policy(policy_type, params)
    state = ArmState.empty(np.arange(ARM_MEANS.size))
    rng = np.random.default_rng(seed)
    uniforms = np.random.default_rng(10_000 + seed).random(STEPS)
    chosen = np.empty(STEPS, dtype=np.int64)
    for step in range(STEPS):
        arm = policy.choose(state, 1, rng)
        chosen[step] = arm[0]
        reward = np.asarray([1.0 if uniforms[step] < ARM_MEANS[arm[0]] else 0.0])
        state = policy.update(state, arm, reward)
    return chosen


@pytest.fixture(scope="module")
def runs() -> dict[str, IntArray]:
    """Chosen arms per policy: one row per seed."""
    return {
        name: np.stack([_play(policy_type, params, seed) for seed in SEEDS])
        for name, (policy_type, params) in POLICIES.items()
    }


@pytest.fixture(scope="module")
def cumulative_regret(runs: dict[str, IntArray]) -> dict[str, npt.NDArray[np.float64]]:
    """Mean over seeds of the regret after each step."""
    regret = {
        name: np.cumsum(ARM_MEANS.max() - ARM_MEANS[chosen], axis=1).mean(axis=0)
        for name, chosen in runs.items()
    }
    print(f"\n{len(SEEDS)} seeds x {STEPS} steps, means {ARM_MEANS.round(3).tolist()}, k = 1")
    for name, curve in regret.items():
        best_share = np.mean(runs[name][:, -5_000:] == ARM_MEANS.argmax())
        per_seed = (ARM_MEANS.max() - ARM_MEANS[runs[name]]).sum(axis=1)
        print(
            f"{name:<13} regret {curve[-1]:7.1f} (sd over seeds {per_seed.std(ddof=1):6.1f})  "
            f"regret(T)/regret(T/2) {curve[-1] / curve[STEPS // 2 - 1]:.3f}  "
            f"best arm in last 5,000 steps {best_share:.3f}"
        )
    return regret


def _growth(curve: npt.NDArray[np.float64]) -> float:
    return float(curve[-1] / curve[STEPS // 2 - 1])


def test_thompson_has_the_lowest_regret(
    cumulative_regret: dict[str, npt.NDArray[np.float64]],
) -> None:
    final = {name: curve[-1] for name, curve in cumulative_regret.items()}
    assert min(final, key=final.__getitem__) == "thompson", final


@pytest.mark.parametrize("name", ["thompson", "ucb1"])
def test_regret_of_optimistic_policies_grows_sublinearly(
    cumulative_regret: dict[str, npt.NDArray[np.float64]], name: str
) -> None:
    # Logarithmic regret doubles the horizon for a constant increment: a ratio near 1.
    assert _growth(cumulative_regret[name]) < 1.5


def test_regret_of_fixed_rate_egreedy_keeps_growing_linearly(
    cumulative_regret: dict[str, npt.NDArray[np.float64]],
) -> None:
    # A fixed 10% of uniform exploration costs the same every step: a ratio near 2.
    assert _growth(cumulative_regret["egreedy(0.1)"]) > 1.7


def test_thompson_settles_on_the_best_arm(runs: dict[str, IntArray]) -> None:
    best_share = np.mean(runs["thompson"][:, -5_000:] == ARM_MEANS.argmax())
    assert best_share > 0.9
