"""Named numpy arrays in an uncompressed .npz, written atomically, read without pickles.

Both the columnar data set and truth.npz are such files; uncompressed, a full
data set loads in a few hundredths of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cineamate.common.errors import InvalidInput

__all__ = ["Arrays", "load_arrays", "save_arrays"]

Arrays = dict[str, NDArray[Any]]


def save_arrays(arrays: Arrays, path: Path) -> None:
    """Write ``arrays`` to ``path`` through a temporary file, so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    savez: Any = np.savez
    with partial.open("wb") as file:
        savez(file, **arrays)
    partial.replace(path)


def load_arrays(path: Path, what: str) -> Arrays:
    """Every array of ``path``; a file that is not an .npz raises InvalidInput naming ``what``."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInput(f"{path} is not {what}: {exc}", field="path") from exc
