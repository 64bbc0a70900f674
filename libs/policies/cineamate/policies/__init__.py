"""Bandit policies, pure and vectorised: the one implementation behind the online
services and the offline replay.

    >>> import numpy as np
    >>> from cineamate.policies import ArmState, make_policy
    >>> state = ArmState.empty(range(1, 3707))
    >>> policy = make_policy("thompson")
    >>> slate = policy.select(state, 10, np.random.default_rng(7))
    >>> state = policy.update(state, slate.arm_ids, np.zeros(10))
"""

from cineamate.policies.base import Policy, Selection
from cineamate.policies.factory import POLICY_TYPES, make_policy
from cineamate.policies.state import ArmState, UnknownArm

__all__ = ["POLICY_TYPES", "ArmState", "Policy", "Selection", "UnknownArm", "make_policy"]
