"""The platform's database schema as versioned SQL files (``sql/NNNN_description.sql``).

Apply with ``cineamate migrate``; ``cineamate run`` applies them on start.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["SQL_DIRECTORY"]

SQL_DIRECTORY = Path(str(files(__name__).joinpath("sql")))
