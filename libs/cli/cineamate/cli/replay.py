"""``cineamate replay``: replay policies over a log and compare them."""

from __future__ import annotations

from typing import Any

__all__ = ["add_replay_command"]


def add_replay_command(commands: Any) -> None:
    """Register the command on the top-level parser."""
