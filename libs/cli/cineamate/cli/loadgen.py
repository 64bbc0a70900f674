"""``cineamate loadgen``: drive a running experiment with users and planted clicks.

    cineamate loadgen --url http://127.0.0.1:8000 --experiment ID --rate 50 --duration 60

Open loop: requests leave at their planned times whatever the latency, and
latency runs from the planned time. Users come from the synthetic MovieLens set
(heavy-tailed activity, gender and age cohorts sent as query parameters) and
click with the probabilities of its planted truth, so the summary can say which
variant is truly best. The set is written to ``$CINEAMATE_HOME/datasets/`` on
first use (a few seconds) unless ``--data`` names another one with a truth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cineamate.common.errors import ConfigError

__all__ = ["add_loadgen_command"]


def add_loadgen_command(commands: Any) -> None:
    """Register ``loadgen`` on the top-level parser."""
    from cineamate.loadgen import DEFAULT_ATTENTION

    loadgen = commands.add_parser(
        "loadgen", help="drive an experiment: open-loop recommendations and planted clicks"
    )
    loadgen.add_argument("--url", help="the public entry (default: the local platform's)")
    loadgen.add_argument("--experiment", required=True, metavar="ID", help="a running experiment")
    loadgen.add_argument("--rate", type=float, required=True, help="recommendations per second")
    loadgen.add_argument("--duration", type=float, required=True, help="seconds")
    loadgen.add_argument("--warmup", type=float, default=0.0, help="unmeasured seconds first")
    loadgen.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    loadgen.add_argument("--data", type=Path, help="MovieLens set with a truth (default: synth)")
    loadgen.add_argument(
        "--attention", type=float, default=DEFAULT_ATTENTION, help="share of shown items looked at"
    )
    loadgen.add_argument("--seed", type=int, default=0)
    loadgen.add_argument("--json", type=Path, metavar="FILE", help="also write the report here")
    loadgen.add_argument("--no-progress", action="store_true", help="no progress bar")
    loadgen.set_defaults(handler=_loadgen)


def _loadgen(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cineamate.cli.dataset import default_dataset_directory
    from cineamate.cli.experiments import platform_token, platform_url
    from cineamate.loadgen import ClickModel, LiveConfig, Population, check_loopback, run_live
    from cineamate.offline.movielens import ensure_synthetic, open_dataset
    from cineamate.stack.demo import SYNTHETIC_DATASET

    url = urlsplit(platform_url(args.url))
    if url.scheme != "http" or url.hostname is None:
        raise ConfigError(f"--url must be http://127.0.0.1:PORT, not {url.geturl()!r}")
    check_loopback(url.hostname)
    path = args.data or ensure_synthetic(default_dataset_directory() / SYNTHETIC_DATASET)
    data = open_dataset(path)
    try:
        model = ClickModel.from_movielens(data, args.attention)
        config = LiveConfig(
            port=url.port or 80,
            experiment_id=args.experiment,
            rate=args.rate,
            duration=args.duration,
            warmup=args.warmup,
            client_key=platform_token("CINEAMATE_CLIENT_KEY"),
            connections=args.connections,
            seed=args.seed,
        )
        total = config.open_loop().schedule.total
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    population = Population.from_movielens(data)
    print(
        f"{total:,} recommendations at {args.rate:g}/s to {url.geturl()} for experiment "
        f"{args.experiment}; {len(population):,} users, clicks from the truth of {path}",
        file=sys.stderr,
    )
    with tqdm(
        total=total, unit="req", desc="loadgen", disable=args.no_progress, file=sys.stderr
    ) as bar:
        report = asyncio.run(run_live(config, population, model, on_progress=bar.update))
    for line in report.summary_lines():
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    return 0
