"""The decision service: Decides ship, iterate or kill with always-valid statistics."""

from cineamate.decision.app import create_app
from cineamate.decision.settings import DecisionSettings

__all__ = ["DecisionSettings", "create_app"]
