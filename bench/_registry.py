"""The benchmark registry and the conventions a report relies on.

Figures stay a flat name -> number mapping; what relates them lives in the
benchmark's details under two reserved keys: ``baselines`` (figure -> the
baseline figure its ``<figure>_ratio`` divides by) and ``targets`` (figure ->
the bound the spec asks for, and whether this run met it). Benchmarks report;
they never assert on a timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Benchmark",
    "Details",
    "Figures",
    "RunOptions",
    "add_ratio",
    "add_target",
    "benchmark",
    "registered",
]

Figures = dict[str, float]
Details = dict[str, Any]


@dataclass(frozen=True)
class RunOptions:
    """What the command line asked for, passed to every benchmark.

    >>> RunOptions(quick=True).repeats(5_000, 500)
    500
    """

    quick: bool = False

    def repeats(self, full: int, quick: int) -> int:
        """``quick`` repetitions under ``--quick``, else ``full``."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: ``run(options)`` returns ``(figures, details)``."""

    name: str
    run: Callable[[RunOptions], tuple[Figures, Details]]
    description: str
    # Runs only when named (``python -m bench soak``), never as part of all.
    explicit: bool = False


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str, *, explicit: bool = False
) -> Callable[
    [Callable[[RunOptions], tuple[Figures, Details]]],
    Callable[[RunOptions], tuple[Figures, Details]],
]:
    """Register the decorated function as the benchmark ``name``; its docstring describes it.
    An ``explicit`` benchmark runs only when named."""

    def register(
        run: Callable[[RunOptions], tuple[Figures, Details]],
    ) -> Callable[[RunOptions], tuple[Figures, Details]]:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        description = (run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else ""
        _REGISTRY[name] = Benchmark(name, run, description, explicit)
        return run

    return register


def registered() -> dict[str, Benchmark]:
    """Every registered benchmark by name, in registration order."""
    return dict(_REGISTRY)


def add_ratio(figures: Figures, details: Details, figure: str, baseline: str) -> None:
    """Add ``<figure>_ratio`` = figure / baseline (both from this run) and record the pair."""
    figures[f"{figure}_ratio"] = figures[figure] / figures[baseline]
    details.setdefault("baselines", {})[figure] = baseline


def add_target(
    details: Details, figures: Figures, figure: str, at_most: float, source: str
) -> None:
    """Record the spec's upper bound for ``figure`` and whether this run met it (never asserted)."""
    details.setdefault("targets", {})[figure] = {
        "at_most": at_most,
        "met": figures[figure] <= at_most,
        "source": source,
    }
