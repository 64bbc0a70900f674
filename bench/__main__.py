"""``python -m bench [NAMES...] [--quick]``: run benchmarks, print a table, write latest.json.

Every public module of the ``bench`` package is imported, so a module that
registers a benchmark with ``@benchmark`` is found without being listed here.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pkgutil
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench
from bench._headline import add_headline
from bench._machine import describe_machine
from bench._registry import Benchmark, Figures, RunOptions, registered
from bench._report import format_table, write_results

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUTPUT = RESULTS / "latest.json"


def _discover() -> dict[str, Benchmark]:
    for module in pkgutil.iter_modules(bench.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"bench.{module.name}")
    return registered()


def _parse(argv: list[str] | None, known: dict[str, Benchmark]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run CineaMate benchmarks; figures are medians, each with a same-run baseline.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default all)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, noisier figures")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--output",
        type=Path,
        help="results JSON file (default latest.json, or NAME.json for one explicit benchmark)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; the exit status is 1 when any of them failed."""
    known = _discover()
    args = _parse(argv, known)
    if args.list:
        for name, entry in known.items():
            only = " (only when named)" if entry.explicit else ""
            print(f"{name:<20} {entry.description}{only}")
        return 0
    chosen = [known[name] for name in args.names] or [e for e in known.values() if not e.explicit]
    output = args.output or DEFAULT_OUTPUT
    if args.output is None and len(chosen) == 1 and chosen[0].explicit:
        # A long benchmark run on its own keeps the suite's latest.json.
        output = RESULTS / f"{chosen[0].name}.json"
    options = RunOptions(quick=args.quick)
    results: dict[str, Any] = {
        "machine": describe_machine(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": options.quick,
        "benchmarks": [entry.name for entry in chosen],
        "figures": {},
        "details": {},
    }
    all_figures: Figures = results["figures"]
    failed = []
    machine = results["machine"]
    print(
        f"{machine['hostname']}: {machine['cpu_model']}, {machine['cpu_count']} cores, "
        f"{machine['memory_gib']} GiB, Python {machine['python']}, numpy {machine['numpy']}"
        f"{', quick' if options.quick else ''}\n"
    )
    for entry in chosen:
        started = time.perf_counter()
        try:
            figures, details = entry.run(options)
        except Exception:
            failed.append(entry.name)
            message = traceback.format_exc()
            print(f"== {entry.name} FAILED\n{message}", file=sys.stderr)
            results["details"][entry.name] = {"error": message.strip().splitlines()[-1]}
            continue
        seconds = time.perf_counter() - started
        clashes = sorted(set(figures) & set(all_figures))
        if clashes:
            raise ValueError(f"{entry.name} repeats figure names {clashes}")
        for figure, value in figures.items():
            if not math.isfinite(value):
                raise ValueError(f"{entry.name} figure {figure} is not a finite number")
            all_figures[figure] = float(value)
        results["details"][entry.name] = {"seconds": round(seconds, 2), **details}
        print(format_table(entry.name, seconds, figures, details), end="\n\n")
    headline, headline_details = add_headline(all_figures)
    if headline:
        all_figures.update(headline)
        results["details"]["headline"] = headline_details
        print(format_table("headline", 0.0, headline, headline_details), end="\n\n")
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    # The machine is shared: a load that rose during the run explains noisy figures.
    machine["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    write_results(output, results)
    print(f"wrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
