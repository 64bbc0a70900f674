"""``cineamate replay``: replay policies over a log and compare them.

    cineamate replay --data PATH [--window auto|all|START:END] [--policies thompson,egreedy,ucb1]
                     [--baselines random,popularity] [--seeds 5] [--k 10] --out DIR

``PATH`` is MovieLens (``ml-1m.zip``, a folder of ``.dat`` files, the columnar
``.npz``) or logged bandit feedback (CSV or Parquet, with the ``ope`` column flags).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cineamate.cli.ope import add_column_arguments, column_map

__all__ = ["add_replay_command"]


def add_replay_command(commands: Any) -> None:
    """Register ``replay`` on the top-level parser."""
    from cineamate.offline.movielens import CLICK_RATING
    from cineamate.offline.replay.evaluate import DEFAULT_MIN_PROPENSITY
    from cineamate.offline.replay.window import DEFAULT_MIN_COVERAGE, DEFAULT_WINDOW_DAYS

    replay = commands.add_parser(
        "replay", help="replay policies over a log and compare them offline"
    )
    replay.add_argument("--data", type=Path, required=True, help="MovieLens or a logged file")
    replay.add_argument(
        "--window", default="auto", help="auto (default), all, or START:END dates (end exclusive)"
    )
    replay.add_argument("--policies", default="thompson,egreedy,ucb1")
    replay.add_argument("--baselines", default="random,popularity", help="'' for none")
    replay.add_argument("--seeds", type=int, default=5)
    replay.add_argument("--k", type=int, default=10, help="slate size (default 10)")
    replay.add_argument("--out", type=Path, required=True, help="folder for the report")
    replay.add_argument(
        "--click-rating",
        type=int,
        default=CLICK_RATING,
        help=f"MovieLens: a rating of at least this is a click (default {CLICK_RATING})",
    )
    replay.add_argument("--top-items", type=int, help="only the N most rated items")
    replay.add_argument("--window-days", type=int, default=DEFAULT_WINDOW_DAYS)
    replay.add_argument(
        "--min-coverage",
        type=float,
        default=DEFAULT_MIN_COVERAGE,
        help="auto window: least share of the catalogue it must cover",
    )
    replay.add_argument(
        "--min-propensity",
        type=float,
        default=DEFAULT_MIN_PROPENSITY,
        help="floor of the logging propensities (clipping)",
    )
    replay.add_argument("--level", type=float, default=0.95, help="interval level")
    add_column_arguments(replay)
    replay.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cineamate.offline.replay.report import write_report
    from cineamate.offline.replay.run import ReplaySpec, run_replay

    spec = ReplaySpec(
        data=args.data,
        window=args.window,
        policies=_names(args.policies),
        baselines=_names(args.baselines),
        seeds=args.seeds,
        k=args.k,
        click_rating=args.click_rating,
        top_items=args.top_items,
        window_days=args.window_days,
        min_coverage=args.min_coverage,
        min_propensity=args.min_propensity,
        level=args.level,
        columns=column_map(args),
    )
    with tqdm(total=0, unit="event", unit_scale=True, desc="replay", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = run_replay(spec, on_progress=progress)
    written = write_report(result, args.out)
    print(f"window {result.window.label()}: {result.window.reason}")
    for figures in result.figures:
        e = figures.estimates
        print(
            f"  {figures.policy:<11} CTR {e['replay'].value:.3f}  IPS {e['ips'].value:.3f}  "
            f"SNIPS {e['snips'].value:.3f}  DR {e['dr'].value:.3f}  regret {figures.regret:,.1f}"
        )
    print(f"wrote {len(written)} files to {args.out} (report.md, results.json, plots)")
    return 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())
