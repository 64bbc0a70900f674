"""The policy service: The learner: applies rewards to arm posteriors kept hot in Redis."""

from cineamate.policy.app import create_app
from cineamate.policy.settings import PolicySettings

__all__ = ["PolicySettings", "create_app"]
