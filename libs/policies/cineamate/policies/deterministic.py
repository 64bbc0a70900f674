"""Policies that rank by a score: UCB1, popularity, and the two halves of epsilon-greedy.

    UCB1            mean + sqrt(2 ln N / n); unplayed arms first (Auer et al. 2002)
    popularity      most rewarded so far
    random          uniform slate
    epsilon-greedy  with probability 1 - epsilon the greedy slate (best means),
                    else a uniform slate; epsilon may decay with the pulls seen

Ties are broken uniformly at random, so the inclusion probabilities are exact:
1 or 0 for arms clear of the k-th score, r / t for a tie group of t arms
sharing r remaining slots.
"""

from __future__ import annotations

import math

import numpy as np

from cineamate.common.errors import InvalidInput
from cineamate.policies.base import BoolArray, FloatArray, IntArray, Policy, SlateRequest, masked
from cineamate.policies.ranking import (
    random_subsets,
    top_k,
    top_k_inclusion,
    top_k_inclusion_at,
    top_k_many,
)
from cineamate.policies.state import ArmState

__all__ = ["EpsilonGreedy", "Popularity", "RandomPolicy", "Ucb1"]


def _all_eligible(state: ArmState, eligible: BoolArray | None) -> BoolArray:
    return np.ones(state.n_arms, dtype=bool) if eligible is None else eligible


def _uniform_slate(
    k: int, rng: np.random.Generator, eligible: BoolArray
) -> tuple[IntArray, FloatArray]:
    allowed = np.flatnonzero(eligible)
    k = min(k, allowed.size)
    positions = allowed[rng.choice(allowed.size, k, replace=False)].astype(np.int64)
    return positions, np.full(k, k / allowed.size if allowed.size else 0.0)


def _uniform_share(k: int, eligible: BoolArray) -> float:
    """Probability that a uniformly random slate includes a given eligible arm."""
    n = int(eligible.sum())
    return min(k, n) / n if n else 0.0


def _uniform_inclusion(k: int, eligible: BoolArray) -> FloatArray:
    return np.where(eligible, _uniform_share(k, eligible), 0.0)


class RandomPolicy(Policy):
    """A uniformly random slate: the usual experiment control."""

    type = "random"

    def inclusion_probabilities(
        self, state: ArmState, k: int, eligible: BoolArray | None = None
    ) -> FloatArray:
        return _uniform_inclusion(k, _all_eligible(state, eligible))

    def _choose(self, request: SlateRequest) -> tuple[IntArray, FloatArray | None]:
        return _uniform_slate(request.k, request.rng, request.eligible)

    def _choose_many(self, state: ArmState, k: int, rng: np.random.Generator, n: int) -> IntArray:
        return random_subsets(rng, n, state.n_arms, k)


class Popularity(Policy):
    """The arms with the most reward so far."""

    type = "popularity"

    def inclusion_probabilities(
        self, state: ArmState, k: int, eligible: BoolArray | None = None
    ) -> FloatArray:
        return top_k_inclusion(masked(state.successes, _all_eligible(state, eligible)), k)

    def _choose(self, request: SlateRequest) -> tuple[IntArray, FloatArray | None]:
        scores = masked(request.state.successes, request.eligible)
        return top_k(scores, request.k, request.rng)

    def _choose_many(self, state: ArmState, k: int, rng: np.random.Generator, n: int) -> IntArray:
        return top_k_many(state.successes, k, rng, n)


class Ucb1(Policy):
    """UCB1 for rewards in [0, 1]: every unplayed arm before any arm is played twice."""

    type = "ucb1"

    def scores(self, state: ArmState) -> FloatArray:
        """Upper confidence bounds; +inf for unplayed arms."""
        total = state.total_pulls
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(2.0 * math.log(max(total, 1.0)) / state.pulls)
            values = state.successes / state.pulls + bonus
        return np.where(state.pulls > 0, values, np.inf)

    def inclusion_probabilities(
        self, state: ArmState, k: int, eligible: BoolArray | None = None
    ) -> FloatArray:
        return top_k_inclusion(masked(self.scores(state), _all_eligible(state, eligible)), k)

    def _choose(self, request: SlateRequest) -> tuple[IntArray, FloatArray | None]:
        scores = masked(self.scores(request.state), request.eligible)
        return top_k(scores, request.k, request.rng)

    def _choose_many(self, state: ArmState, k: int, rng: np.random.Generator, n: int) -> IntArray:
        return top_k_many(self.scores(state), k, rng, n)


class EpsilonGreedy(Policy):
    """Greedy slate with probability 1 - epsilon, uniform slate otherwise.

    With ``decay`` > 0 the exploration rate is ``max(min_epsilon, epsilon / (1 + decay * N))``
    after N pulls, so the propensity stays a function of the state alone.
    """

    type = "egreedy"

    def __init__(self, epsilon: float = 0.1, decay: float = 0.0, min_epsilon: float = 0.0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise InvalidInput("epsilon must lie in [0, 1]", field="params.epsilon")
        if decay < 0.0:
            raise InvalidInput("decay must be >= 0", field="params.decay")
        if not 0.0 <= min_epsilon <= epsilon:
            raise InvalidInput("min_epsilon must lie in [0, epsilon]", field="params.min_epsilon")
        self.epsilon = epsilon
        self.decay = decay
        self.min_epsilon = min_epsilon

    def epsilon_at(self, state: ArmState) -> float:
        """The exploration rate after the state's pulls."""
        if self.decay == 0.0:
            return self.epsilon
        return max(self.min_epsilon, self.epsilon / (1.0 + self.decay * state.total_pulls))

    def inclusion_probabilities(
        self, state: ArmState, k: int, eligible: BoolArray | None = None
    ) -> FloatArray:
        mask = _all_eligible(state, eligible)
        epsilon = self.epsilon_at(state)
        greedy = top_k_inclusion(masked(state.means(), mask), k)
        return (1.0 - epsilon) * greedy + epsilon * _uniform_inclusion(k, mask)

    def _choose(self, request: SlateRequest) -> tuple[IntArray, FloatArray | None]:
        state, k, rng, eligible = request.state, request.k, request.rng, request.eligible
        epsilon = self.epsilon_at(state)
        scores = masked(state.means(), eligible)
        if rng.random() < epsilon:
            positions, _ = _uniform_slate(k, rng, eligible)
        else:
            positions, _ = top_k(scores, k, rng)
        if not request.with_propensities:
            return positions, None
        # Either branch could have produced the slate: the propensity mixes both.
        greedy = top_k_inclusion_at(scores, k, positions)
        return positions, (1.0 - epsilon) * greedy + epsilon * _uniform_share(k, eligible)

    def _choose_many(self, state: ArmState, k: int, rng: np.random.Generator, n: int) -> IntArray:
        explore = rng.random(n) < self.epsilon_at(state)
        slates = np.empty((n, k), dtype=np.int64)
        slates[explore] = random_subsets(rng, int(explore.sum()), state.n_arms, k)
        slates[~explore] = top_k_many(state.means(), k, rng, int((~explore).sum()))
        return slates
