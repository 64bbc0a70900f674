"""``cineamate ope``: off-policy estimates of a target policy on logged feedback."""

from __future__ import annotations

from typing import Any

__all__ = ["add_ope_command"]


def add_ope_command(commands: Any) -> None:
    """Register the command on the top-level parser."""
