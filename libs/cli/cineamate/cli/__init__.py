"""The ``cineamate`` command, the single entry point for operators."""

from cineamate.cli.main import main

__all__ = ["main"]
