"""``cineamate replay``: replay policies over a log and compare them.

    cineamate replay --data PATH [--window auto|all|START:END] [--policies thompson,egreedy,ucb1]
                     [--baselines random,popularity] [--seeds 5] [--k 10] --out DIR

``PATH`` is MovieLens (``ml-1m.zip``, a folder of ``.dat`` files, the columnar
``.npz``) or logged bandit feedback (CSV or Parquet, with the ``ope`` column flags).

    cineamate replay --data PATH --live URL [--rate 100 | --speedup X] [--limit N]
                     [--reward-window-seconds 5] [--control random] --out DIR

drives the running platform with the window's users and clicks, then compares each
variant's live CTR with the offline replay of its policy (``live.json``, ``live.md``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cineamate.cli.ope import add_column_arguments, column_map

if TYPE_CHECKING:
    from cineamate.offline.replay.run import ReplaySpec

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
    _add_live_arguments(replay)
    replay.set_defaults(handler=_replay)


def _add_live_arguments(replay: argparse.ArgumentParser) -> None:
    from cineamate.offline.replay.live import (
        DEFAULT_RATE,
        DEFAULT_REWARD_WINDOW_SECONDS,
    )
    from cineamate.offline.replay.live_driver import DEFAULT_CONCURRENCY

    live = replay.add_argument_group(
        "live replay", "drive the running platform with the log, then compare with offline"
    )
    live.add_argument("--live", metavar="URL", help="the platform's public address")
    pace = live.add_mutually_exclusive_group()
    pace.add_argument("--speedup", type=float, help="event-time seconds per wall second")
    pace.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"average events per wall second (default {DEFAULT_RATE:g})",
    )
    live.add_argument("--limit", type=int, help="only the window's first N events")
    live.add_argument(
        "--reward-window-seconds",
        type=float,
        default=DEFAULT_REWARD_WINDOW_SECONDS,
        help=f"the experiment's reward window (default {DEFAULT_REWARD_WINDOW_SECONDS:g})",
    )
    live.add_argument("--control", default="random", help="policy type of the control")
    live.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight at most (default {DEFAULT_CONCURRENCY})",
    )


def _replay(args: argparse.Namespace) -> int:
    if args.live:
        return _replay_live(args)
    from tqdm import tqdm

    from cineamate.offline.replay.report import write_report
    from cineamate.offline.replay.run import run_replay

    spec = _spec(args, baselines=_names(args.baselines))
    with tqdm(total=0, unit="event", unit_scale=True, desc="replay", file=sys.stderr) as bar:
        result = run_replay(spec, on_progress=_progress(bar))
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


def _replay_live(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cineamate.cli.experiments import platform_token, platform_url
    from cineamate.offline.replay.live import LiveSpec, live_table, run_live, write_live_report

    # The control stands in for the baselines: it is a variant of the experiment.
    spec = LiveSpec(
        replay=_spec(args, baselines=(args.control,)),
        url=platform_url(args.live),
        admin_token=platform_token("CINEAMATE_ADMIN_TOKEN"),
        client_key=platform_token("CINEAMATE_CLIENT_KEY"),
        control=args.control,
        speedup=args.speedup,
        rate=args.rate,
        limit=args.limit,
        reward_window_seconds=args.reward_window_seconds,
        concurrency=args.concurrency,
    )
    with (
        tqdm(total=0, unit="event", unit_scale=True, desc="live", file=sys.stderr) as live,
        tqdm(total=0, unit="event", unit_scale=True, desc="offline", file=sys.stderr) as offline,
    ):
        result = run_live(spec, on_drive=_progress(live), on_offline=_progress(offline))
    write_live_report(result, args.out)
    drive = result.drive
    print(f"window {result.cut.window.label()}: {result.cut.window.reason}")
    print(
        f"experiment {result.experiment_id}: {len(result.cut.events):,} events in "
        f"{drive.seconds:,.1f} s ({drive.rate:,.0f} events/s), {drive.failed:,} failed"
    )
    print(live_table(result.comparisons), end="")
    print(f"wrote live.json and live.md to {args.out}")
    print(f"dashboard: {spec.url}/?experiment={result.experiment_id}")
    return 0


def _spec(args: argparse.Namespace, baselines: tuple[str, ...]) -> ReplaySpec:
    from cineamate.offline.replay.run import ReplaySpec

    return ReplaySpec(
        data=args.data,
        window=args.window,
        policies=_names(args.policies),
        baselines=baselines,
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


def _progress(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())
