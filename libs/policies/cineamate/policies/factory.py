"""One factory keyed by policy type, so configuration names a policy by string."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cineamate.common.errors import InvalidInput
from cineamate.policies.base import Policy
from cineamate.policies.deterministic import EpsilonGreedy, Popularity, RandomPolicy, Ucb1
from cineamate.policies.thompson import ThompsonSampling

__all__ = ["POLICY_TYPES", "make_policy"]

_CLASSES: dict[str, type[Policy]] = {
    "thompson": ThompsonSampling,
    "egreedy": EpsilonGreedy,
    "ucb1": Ucb1,
    "random": RandomPolicy,
    "popularity": Popularity,
}
POLICY_TYPES = tuple(_CLASSES)


def make_policy(policy_type: str, params: Mapping[str, Any] | None = None) -> Policy:
    """The policy of ``policy_type`` configured by ``params``.

    >>> make_policy("egreedy", {"epsilon": 0.2}).epsilon
    0.2
    """
    cls = _CLASSES.get(policy_type)
    if cls is None:
        known = ", ".join(POLICY_TYPES)
        raise InvalidInput(f"unknown policy type {policy_type!r}; one of {known}", field="type")
    try:
        return cls(**dict(params or {}))
    except TypeError as exc:
        raise InvalidInput(f"invalid parameters for {policy_type}: {exc}", field="params") from exc
