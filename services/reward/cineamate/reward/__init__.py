"""The reward service: Joins serves and clicks over the attribution window into rewards."""

from cineamate.reward.app import create_app
from cineamate.reward.settings import RewardSettings

__all__ = ["RewardSettings", "create_app"]
