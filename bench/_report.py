"""The printed table and the JSON results file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench._registry import Details, Figures

__all__ = ["format_table", "write_results"]

# A figure's unit is the last of these its name carries; ratios are shown beside their figure.
_UNITS = {
    "us": "us",
    "ms": "ms",
    "s": "s",
    "seconds": "s",
    "per_s": "/s",
    "count": "",
    "bytes": "B",
}


def _unit(name: str) -> str:
    parts = name.split("_")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "s" and index > 0 and parts[index - 1] == "per":
            return _UNITS["per_s"]
        if parts[index] in _UNITS:
            return _UNITS[parts[index]]
    return ""


def _number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(name: str, seconds: float, figures: Figures, details: Details) -> str:
    """One benchmark's figures as an aligned text table; ratios sit beside their figure."""
    baselines: Mapping[str, str] = details.get("baselines", {})
    targets: Mapping[str, Mapping[str, Any]] = details.get("targets", {})
    rows = [("figure", "value", "unit", "ratio", "baseline", "target")]
    for figure, value in figures.items():
        if figure.endswith("_ratio") and figure.removesuffix("_ratio") in baselines:
            continue
        ratio = figures.get(f"{figure}_ratio")
        target = targets.get(figure)
        target_text = ""
        if target is not None:
            verdict = "met" if target["met"] else "MISSED"
            target_text = f"<= {_number(target['at_most'])} {verdict}"
        rows.append(
            (
                figure,
                _number(value),
                _unit(figure),
                "" if ratio is None else f"{ratio:.3f}x",
                baselines.get(figure, ""),
                target_text,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    right_aligned = {1, 3}
    lines = [f"== {name} ({seconds:.1f} s)"]
    for position, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if position == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def write_results(path: Path, results: Mapping[str, Any]) -> None:
    """Write the results atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    partial.replace(path)
