"""The policy interface every bandit policy implements."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from cineamate.common.errors import InvalidInput
from cineamate.policies.state import ArmState

__all__ = ["Policy", "Selection", "SlateRequest"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Selection:
    """A ranked slate: arm ids best first, and each one's probability of being in the slate."""

    arm_ids: IntArray
    propensities: FloatArray


@dataclass(frozen=True)
class SlateRequest:
    """What a policy needs to choose one slate."""

    state: ArmState
    k: int
    rng: np.random.Generator
    eligible: BoolArray
    all_eligible: bool
    with_propensities: bool


class Policy(ABC):
    """A bandit policy: a pure function of an ArmState and an injected random generator."""

    type: ClassVar[str]
    # Whether ``inclusion_probabilities`` is exact (else a Monte-Carlo estimate).
    exact_propensities: ClassVar[bool] = True

    def select(
        self,
        state: ArmState,
        k: int,
        rng: np.random.Generator,
        eligible: BoolArray | None = None,
    ) -> Selection:
        """A slate of up to k distinct arms, with the marginal propensity of each."""
        if k < 1:
            raise InvalidInput("slate size k must be at least 1", field="k")
        mask = _eligible_mask(state, eligible)
        request = SlateRequest(state, k, rng, mask, eligible is None, True)
        positions, propensities = self._choose(request)
        assert propensities is not None
        return Selection(state.arm_ids[positions], propensities)

    def choose(
        self,
        state: ArmState,
        k: int,
        rng: np.random.Generator,
        eligible: BoolArray | None = None,
    ) -> IntArray:
        """The slate alone, without propensities: what simulations and replay need, faster."""
        if k < 1:
            raise InvalidInput("slate size k must be at least 1", field="k")
        mask = _eligible_mask(state, eligible)
        positions, _ = self._choose(SlateRequest(state, k, rng, mask, eligible is None, False))
        return state.arm_ids[positions]

    def choose_many(self, state: ArmState, k: int, rng: np.random.Generator, n: int) -> IntArray:
        """``n`` slates drawn independently from one state, one per row (shape ``(n, min(k,
        arms))``), each distributed as ``choose`` draws it: the replay's batch between updates."""
        if k < 1:
            raise InvalidInput("slate size k must be at least 1", field="k")
        if n < 0:
            raise InvalidInput("the number of slates must be >= 0", field="n")
        k = min(k, state.n_arms)
        if n == 0 or k == 0:
            return np.empty((n, k), dtype=np.int64)
        return state.arm_ids[self._choose_many(state, k, rng, n)]

    def update(self, state: ArmState, arm_ids: npt.ArrayLike, rewards: npt.ArrayLike) -> ArmState:
        """The state after a batch of (arm, reward in [0, 1]) observations."""
        return state.updated(arm_ids, rewards)

    @abstractmethod
    def inclusion_probabilities(
        self, state: ArmState, k: int, eligible: BoolArray | None = None
    ) -> FloatArray:
        """For every arm, the probability that ``select`` puts it in the slate."""

    def _choose_many(self, state: ArmState, k: int, rng: np.random.Generator, n: int) -> IntArray:
        """Positions of ``n`` slates of exactly k arms (1 <= k <= arms), one per row.
        Policies override this with a vectorised draw; this fallback loops."""
        request = SlateRequest(state, k, rng, _all_true(state.n_arms), True, False)
        return np.stack([self._choose(request)[0] for _ in range(n)])

    @abstractmethod
    def _choose(self, request: SlateRequest) -> tuple[IntArray, FloatArray | None]:
        """Positions (into the state's arrays) of the slate, best first, and, when asked for,
        their propensities."""


def _eligible_mask(state: ArmState, eligible: BoolArray | None) -> BoolArray:
    if eligible is None:
        return _all_true(state.n_arms)
    mask = np.asarray(eligible, dtype=bool)
    if mask.shape != (state.n_arms,):
        raise InvalidInput("eligible must have one flag per arm", field="eligible")
    return mask


@functools.lru_cache(maxsize=64)
def _all_true(n: int) -> BoolArray:
    """A shared read-only all-True mask: most requests restrict nothing."""
    mask = np.ones(n, dtype=bool)
    mask.flags.writeable = False
    return mask


def masked(scores: FloatArray, eligible: BoolArray) -> FloatArray:
    """Scores with ineligible arms set to -inf."""
    return np.where(eligible, scores, -np.inf)
