"""``cineamate``: run the platform, serve one service, migrate, inspect settings.

    cineamate run                    the whole platform (embedded stores unless configured)
    cineamate serve SERVICE          one service, or the public entry (``gateway``)
    cineamate migrate                apply database migrations
    cineamate topics                 create the Kafka topics
    cineamate settings [--markdown]  every setting with its default
    cineamate schemas [--out DIR]    write the JSON Schema of every event
    cineamate experiment ACTION      create, list, show, start, pause, resume, stop experiments
    cineamate dataset ACTION         fetch, load or synthesise MovieLens 1M
    cineamate ope                    off-policy estimates of a target policy on a logged file
    cineamate replay                 replay policies over a log and compare them
    cineamate loadgen                drive an experiment with users and planted clicks

Configuration errors print one line naming the variable and exit with code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from cineamate.common.errors import CineamateError, ConfigError

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"cineamate: error: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except CineamateError as exc:
        print(f"cineamate: error: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.retriable else 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    from cineamate.stack.services import PROCESS_NAMES

    parser = argparse.ArgumentParser(
        prog="cineamate", description="CineaMate multi-armed-bandit experimentation platform."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the whole platform on this machine")
    run.set_defaults(handler=_run)

    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=PROCESS_NAMES)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)

    topics = commands.add_parser("topics", help="create the Kafka topics")
    topics.set_defaults(handler=_topics)

    settings = commands.add_parser("settings", help="list every setting with its default")
    settings.add_argument("--markdown", action="store_true", help="as a Markdown table")
    settings.add_argument(
        "--update-readme", type=Path, metavar="PATH", help="rewrite the settings table of PATH"
    )
    settings.set_defaults(handler=_settings)

    from cineamate.cli.experiments import add_experiment_commands

    add_experiment_commands(commands)

    from cineamate.cli.dataset import add_dataset_commands
    from cineamate.cli.loadgen import add_loadgen_command
    from cineamate.cli.ope import add_ope_command
    from cineamate.cli.replay import add_replay_command

    add_dataset_commands(commands)
    add_ope_command(commands)
    add_replay_command(commands)
    add_loadgen_command(commands)

    schemas = commands.add_parser("schemas", help="write the JSON Schema of every event")
    schemas.add_argument("--out", type=Path, default=Path("docs/schemas"))
    schemas.set_defaults(handler=_schemas)
    return parser


def _run(args: argparse.Namespace) -> int:
    from cineamate.common.logging import configure_logging
    from cineamate.common.settings import load_settings
    from cineamate.stack.run import RunSettings, run_platform

    settings = load_settings(RunSettings)
    configure_logging("cineamate", settings.log_level, "text")
    return run_platform(settings)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cineamate.common.logging import configure_logging
    from cineamate.common.settings import load_settings
    from cineamate.stack.processes import ensure_port_free
    from cineamate.stack.services import load_service, port_variable

    service = load_service(args.service)
    settings = load_settings(service.settings_class)
    configure_logging(service.name, settings.log_level, settings.log_format)  # type: ignore[attr-defined]
    host, port = settings.bind_host, settings.port  # type: ignore[attr-defined]
    ensure_port_free(host, port, setting=port_variable(service.name))
    uvicorn.run(
        service.create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from cineamate.common.settings import CommonSettings, load_settings
    from cineamate.stack.provision import apply_migrations

    settings = load_settings(CommonSettings)
    applied = asyncio.run(apply_migrations(settings.database_url.get_secret_value()))
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none (up to date)"
    print(f"migrations applied: {names}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    from cineamate.common.settings import CommonSettings, load_settings
    from cineamate.stack.provision import create_topics

    settings = load_settings(CommonSettings)
    created = asyncio.run(create_topics(settings))
    print(f"topics created: {', '.join(created) or 'none (all exist)'}")
    return 0


def _settings(args: argparse.Namespace) -> int:
    from cineamate.cli.settings_doc import render_settings, update_readme

    if args.update_readme:
        args.update_readme.write_text(update_readme(args.update_readme.read_text()))
        return 0
    print(render_settings(markdown=args.markdown), end="")
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from cineamate.cli.schemas import write_schemas

    written = write_schemas(args.out)
    print(f"wrote {len(written)} schemas to {args.out}")
    return 0
