"""CineaMate benchmark suite: measured figures, each next to a baseline taken in the same run.

A benchmark is a function of the run options that returns ``(figures, details)``:
``figures`` maps a unique name to one number (a median, or a rate), ``details``
holds anything JSON-serialisable that explains it. Register it with
``@benchmark("name")`` in any public module of this package; ``python -m bench``
imports every such module, runs what was asked for, prints a table and writes
``bench/results/latest.json``.

    >>> from bench import Details, Figures, RunOptions, add_ratio, benchmark
    >>> @benchmark("example")
    ... def run(options: RunOptions) -> tuple[Figures, Details]:
    ...     figures: Figures = {"example_us": 2.0, "baseline_example_us": 1.0}
    ...     details: Details = {}
    ...     add_ratio(figures, details, "example_us", "baseline_example_us")
    ...     return figures, details
"""

from bench._registry import (
    Benchmark,
    Details,
    Figures,
    RunOptions,
    add_ratio,
    add_target,
    benchmark,
    registered,
)
from bench._timing import Summary, summarise, time_calls

__all__ = [
    "Benchmark",
    "Details",
    "Figures",
    "RunOptions",
    "Summary",
    "add_ratio",
    "add_target",
    "benchmark",
    "registered",
    "summarise",
    "time_calls",
]
