"""``cineamate dataset``: fetch, load or synthesise MovieLens 1M.

    cineamate dataset fetch movielens-1m [--out DIR] [--url URL]
    cineamate dataset synth --out DIR [--scale 1.0] [--seed N]
    cineamate dataset load PATH [--catalogue movielens] [--columnar FILE] [--any-size]

Downloads land in ``$CINEAMATE_HOME/datasets/`` unless ``--out`` says otherwise;
``load`` reads ``DATABASE_URL`` and nothing else, so it needs no broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import ProcessSettings, load_settings, setting

__all__ = ["DatasetSettings", "add_dataset_commands", "default_dataset_directory"]

_SOURCES = ("movielens-1m",)
_COLUMNAR_NAME = "movielens.npz"


class DatasetSettings(ProcessSettings):
    """What ``cineamate dataset load`` reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_", extra="ignore", frozen=True)

    database_url: SecretStr = setting(
        env="DATABASE_URL",
        description="PostgreSQL URL, postgresql://user:password@host:port/database.",
    )


def default_dataset_directory() -> Path:
    """``$CINEAMATE_HOME/datasets``, with the home ``cineamate run`` uses."""
    from cineamate.stack.run import RunSettings

    return load_settings(RunSettings).home / "datasets"


def add_dataset_commands(commands: Any) -> None:
    """Register ``dataset`` and its subcommands on the top-level parser."""
    dataset = commands.add_parser("dataset", help="fetch, load or synthesise MovieLens 1M")
    actions = dataset.add_subparsers(dest="action", required=True, metavar="ACTION")

    fetch = actions.add_parser("fetch", help="download ml-1m.zip from GroupLens and check it")
    fetch.add_argument("source", choices=_SOURCES)
    fetch.add_argument("--out", type=Path, help="folder (default $CINEAMATE_HOME/datasets)")
    fetch.add_argument("--url", help="download from here instead of GroupLens")
    fetch.set_defaults(handler=_fetch)

    synth = actions.add_parser("synth", help="write a synthetic ML-1M with its ground truth")
    synth.add_argument("--out", type=Path, required=True, help="folder to write")
    synth.add_argument("--scale", type=float, default=1.0, help="size relative to ML-1M")
    synth.add_argument("--seed", type=int, help="random seed (default fixed)")
    synth.set_defaults(handler=_synth)

    load = actions.add_parser("load", help="load ml-1m.zip or a folder into PostgreSQL")
    load.add_argument("path", type=Path, metavar="PATH", help="ml-1m.zip, a folder or a .npz")
    load.add_argument("--catalogue", default="movielens", help="catalogue name (movielens)")
    load.add_argument("--columnar", type=Path, help="where to write the columnar .npz")
    load.add_argument("--any-size", action="store_true", help="accept counts other than ML-1M's")
    load.set_defaults(handler=_load)


def _fetch(args: argparse.Namespace) -> int:
    from cineamate.offline.movielens.fetch import ML_1M_URL, fetch_movielens

    directory = args.out or default_dataset_directory()
    started = time.monotonic()
    path = fetch_movielens(directory, url=args.url or ML_1M_URL, progress=_interactive())
    print(f"{path}: checksum verified ({time.monotonic() - started:.1f} s)")
    print(f"next: cineamate dataset load {path}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from cineamate.offline.movielens import DEFAULT_SEED, statistics_of, write_synthetic

    seed = DEFAULT_SEED if args.seed is None else args.seed
    started = time.monotonic()
    print(f"writing synthetic MovieLens 1M (scale {args.scale:g}, seed {seed}) to {args.out}")
    data = write_synthetic(args.out, args.scale, seed, progress=_interactive())
    for line in statistics_of(data).lines():
        print(f"  {line}")
    print(f"wrote {args.out} in {time.monotonic() - started:.1f} s")
    return 0


def _load(args: argparse.Namespace) -> int:
    from cineamate.offline.movielens import ML_1M, open_dataset, write_columnar
    from cineamate.offline.movielens.load import load_into_postgres
    from cineamate.offline.movielens.stats import check_counts, counts_of
    from cineamate.stack.provision import apply_migrations

    settings = load_settings(DatasetSettings)
    database_url = settings.database_url.get_secret_value()
    started = time.monotonic()
    print(f"reading {args.path}", file=sys.stderr)
    data = open_dataset(args.path)
    counts = counts_of(data)
    if not args.any_size:
        check_counts(counts, ML_1M)
    columnar = args.columnar or _columnar_path(args.path)
    if columnar is not None and columnar != args.path:
        write_columnar(data, columnar)
    print("loading into PostgreSQL", file=sys.stderr)
    asyncio.run(apply_migrations(database_url, timeout=10.0))
    asyncio.run(
        load_into_postgres(data, database_url, catalogue=args.catalogue, progress=_interactive())
    )
    written = f"; columnar file {columnar}" if columnar is not None else ""
    truth = " (with ground truth)" if data.truth is not None else ""
    print(
        f"loaded {counts}{truth} into PostgreSQL and catalogue {args.catalogue!r}{written} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


def _columnar_path(path: Path) -> Path | None:
    """Beside the data: ``ml-1m.npz`` for ``ml-1m.zip``, ``DIR/movielens.npz`` for a folder."""
    if path.is_dir():
        return path / _COLUMNAR_NAME
    if path.suffix == ".npz":
        return None
    return path.with_suffix(".npz")


def _interactive() -> bool:
    return sys.stderr.isatty()
