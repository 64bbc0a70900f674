"""``python -m cineamate.loadgen``: one open-loop run in its own process, the report as JSON.

A load generator that shares the server's process (or its event loop)
measures its own stalls as the server's; run it as a separate process.

    python -m cineamate.loadgen --port 8000 --rate 1000 --duration 10 --warmup 2 \\
        --path '/api/movies/recommendations?experiment_id=e1&user_id=u{user}' \\
        --users 100000 --header-env 'Authorization=LOADGEN_AUTHORIZATION'

``{user}`` in the path is replaced by a user number drawn uniformly from
``0..users-1`` per request (seeded). Header values named by ``--header-env``
are read from the environment, so secrets stay out of the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from cineamate.loadgen.errors import NonLoopbackHost
from cineamate.loadgen.openloop import (
    DEFAULT_CONNECTIONS,
    LOOPBACK_HOST,
    OpenLoopConfig,
    RequestFactory,
    run_open_loop,
)
from cineamate.loadgen.report import LoadReport

__all__ = ["main", "user_path_factory"]

USER_PLACEHOLDER = "{user}"


def user_path_factory(
    template: str, users: int, total: int, seed: int, headers: Mapping[str, str]
) -> RequestFactory:
    """Request i gets ``template`` with ``{user}`` replaced by the i-th seeded user draw."""
    if users < 1:
        return lambda index: (template, headers)
    drawn = np.random.default_rng(seed).integers(0, users, total).tolist()
    head, placeholder, tail = template.partition(USER_PLACEHOLDER)
    if not placeholder:
        return lambda index: (template, headers)
    return lambda index: (f"{head}{drawn[index]}{tail}", headers)


def _headers(pairs: Sequence[str], from_env: Sequence[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, colon, value = pair.partition(":")
        if not colon:
            raise SystemExit(f"--header expects 'Name: value', got {pair!r}")
        headers[name.strip()] = value.strip()
    for pair in from_env:
        name, equals, variable = pair.partition("=")
        if not equals or variable not in os.environ:
            raise SystemExit(f"--header-env expects Name=VARIABLE with VARIABLE set: {pair!r}")
        headers[name.strip()] = os.environ[variable]
    return headers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cineamate.loadgen",
        description="Open-loop HTTP/1.1 GET load against 127.0.0.1; prints the report as JSON.",
    )
    parser.add_argument("--host", default=LOOPBACK_HOST, help="only 127.0.0.1 is accepted")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="planned requests per second")
    parser.add_argument("--duration", type=float, required=True, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--grace", type=float, default=2.0, help="seconds to wait for stragglers")
    parser.add_argument("--lag-limit", type=float, default=0.005, help="generator lag, seconds")
    parser.add_argument("--path", default="/", help=f"request target; {USER_PLACEHOLDER} varies")
    parser.add_argument("--users", type=int, default=0, help=f"distinct {USER_PLACEHOLDER} values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--header", action="append", default=[], metavar="NAME: VALUE")
    parser.add_argument("--header-env", action="append", default=[], metavar="NAME=VARIABLE")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default event loop")
    return parser


def _run(config: OpenLoopConfig, factory: RequestFactory, use_uvloop: bool) -> LoadReport:
    # Collection pauses would count as the server's latency; a run is bounded, so
    # its garbage is too.
    gc.collect()
    gc.disable()
    try:
        if use_uvloop:
            import uvloop

            return uvloop.run(run_open_loop(config, factory))
        return asyncio.run(run_open_loop(config, factory))
    finally:
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """Run once and print the report; exit status 0 whatever the server answered, 2 for a
    usage error (such as a host other than 127.0.0.1)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = OpenLoopConfig(
            host=args.host,
            port=args.port,
            rate=args.rate,
            duration=args.duration,
            warmup=args.warmup,
            connections=args.connections,
            grace=args.grace,
            lag_limit=args.lag_limit,
        )
    except (NonLoopbackHost, ValueError) as exc:
        parser.error(str(exc))
    headers = _headers(args.header, args.header_env)
    factory = user_path_factory(args.path, args.users, config.schedule.total, args.seed, headers)
    report = _run(config, factory, not args.no_uvloop)
    json.dump(report.as_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
