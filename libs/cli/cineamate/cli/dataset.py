"""``cineamate dataset``: fetch, load or synthesise MovieLens 1M."""

from __future__ import annotations

from typing import Any

__all__ = ["add_dataset_commands"]


def add_dataset_commands(commands: Any) -> None:
    """Register the command on the top-level parser."""
