"""The assignment service: Experiments API, sticky assignment and the recommendation hot path."""

from cineamate.assignment.app import create_app
from cineamate.assignment.settings import AssignmentSettings

__all__ = ["AssignmentSettings", "create_app"]
