"""``cineamate experiment``: create and steer experiments through the public API.

The address is ``--url``, else ``CINEAMATE_URL``, else the running local
platform's (``$CINEAMATE_HOME/run.json``), else http://127.0.0.1:8000. The admin
token is ``CINEAMATE_ADMIN_TOKEN``, else the local platform's ``tokens.env``
(``platform_url`` and ``platform_token``, which ``cineamate replay --live`` uses too).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import httpx

from cineamate.common.errors import CineamateError, ConfigError, DependencyUnavailable

__all__ = ["add_experiment_commands", "platform_token", "platform_url"]

_DEFAULT_URL = "http://127.0.0.1:8000"


def add_experiment_commands(commands: Any) -> None:
    """Register ``experiment`` and its subcommands on the top-level parser."""
    experiment = commands.add_parser("experiment", help="create and steer experiments")
    experiment.add_argument("--url", help="public address of the platform")
    actions = experiment.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create an experiment")
    create.add_argument("--name", required=True)
    create.add_argument("--duration", type=float, default=14.0, help="days (default 14)")
    create.add_argument("--traffic", type=float, default=0.8, help="share of users (default 0.8)")
    create.add_argument("--policies", default="thompson,egreedy,ucb1", help="policy types")
    create.add_argument("--control", default="random", help="policy type of the control")
    create.add_argument("--catalogue", default="movielens", help="a loaded catalogue's name")
    create.add_argument("--items", help="item ids instead of a catalogue: 1,2,3 or 1-3706")
    create.add_argument("--slate-size", type=int, default=10)
    create.add_argument("--reward-window-hours", type=float, default=24.0)
    create.add_argument("--start", action="store_true", help="start it at once")
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="list experiments")
    listing.add_argument("--status", choices=["draft", "running", "paused", "stopped"])
    listing.set_defaults(handler=_list)

    for action, help_text, status in (
        ("show", "show one experiment", None),
        ("start", "start a draft experiment", "running"),
        ("pause", "pause a running experiment", "paused"),
        ("resume", "resume a paused experiment", "running"),
        ("stop", "stop an experiment for good", "stopped"),
    ):
        command = actions.add_parser(action, help=help_text)
        command.add_argument("experiment_id", metavar="ID")
        command.set_defaults(handler=_show if status is None else _set_status, status=status)


def _create(args: argparse.Namespace) -> int:
    types = [name.strip() for name in args.policies.split(",") if name.strip()]
    policies: list[dict[str, Any]] = [{"name": name, "type": name} for name in types]
    policies.append({"name": "control", "type": args.control, "control": True})
    body: dict[str, Any] = {
        "name": args.name,
        "catalogue": _items(args.items) if args.items else args.catalogue,
        "policies": policies,
        "traffic": args.traffic,
        "slate_size": args.slate_size,
        "reward_window_hours": args.reward_window_hours,
        "duration_days": args.duration,
    }
    with _Client(args.url) as client:
        experiment = client.call("POST", "/api/experiments", body)
        if args.start:
            experiment = client.call(
                "PATCH", f"/api/experiments/{experiment['id']}", {"status": "running"}
            )
        print(f"created {experiment['id']} ({experiment['status']}): {experiment['name']}")
        print(f"dashboard: {client.url}/?experiment={experiment['id']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _Client(args.url) as client:
        path = "/api/experiments" + (f"?status={args.status}" if args.status else "")
        experiments = client.call("GET", path)
    if not experiments:
        print("no experiments")
        return 0
    print(f"{'id':<18} {'status':<8} {'traffic':>7}  {'policies':<40} name")
    for experiment in experiments:
        names = ",".join(p["name"] for p in experiment["policies"])
        print(
            f"{experiment['id']:<18} {experiment['status']:<8} {experiment['traffic']:>7.2f}  "
            f"{names:<40} {experiment['name']}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    with _Client(args.url) as client:
        experiment = client.call("GET", f"/api/experiments/{args.experiment_id}")
        print(json.dumps(experiment, indent=2))
        print(f"dashboard: {client.url}/?experiment={experiment['id']}")
    return 0


def _set_status(args: argparse.Namespace) -> int:
    with _Client(args.url) as client:
        experiment = client.call(
            "PATCH", f"/api/experiments/{args.experiment_id}", {"status": args.status}
        )
        print(f"{experiment['id']} is {experiment['status']}")
    return 0


def _items(spec: str) -> list[int]:
    items: list[int] = []
    try:
        for part in spec.split(","):
            low, _, high = part.strip().partition("-")
            items += list(range(int(low), int(high) + 1)) if high else [int(low)]
    except ValueError:
        raise ConfigError(f"--items: {spec!r} is not a list like 1,2,3 or 1-3706") from None
    return items


class _Client:
    """The public API with the admin token; errors become one readable line."""

    def __init__(self, url: str | None) -> None:
        self.url = platform_url(url)
        token = platform_token("CINEAMATE_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers["x-cineamate-actor"] = f"cli:{os.environ.get('USER', 'unknown')}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            answer = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise DependencyUnavailable(
                f"cannot reach {self.url} ({type(exc).__name__}); is the platform running "
                "(`make run`)?"
            ) from exc
        if answer.status_code >= 400:
            try:
                error = answer.json()["error"]
                field = f" (field {error['field']})" if error.get("field") else ""
                message = f"{error['message']}{field}"
            except (ValueError, KeyError, TypeError):
                message = answer.text[:200]
            raise CineamateError(f"{answer.status_code}: {message}")
        return answer.json()


def platform_url(url: str | None = None) -> str:
    """``url``, else ``CINEAMATE_URL``, else the running local platform's, else the default."""
    home = _home()
    found = url or os.environ.get("CINEAMATE_URL") or _local_entry(home) or _DEFAULT_URL
    return found.rstrip("/")


def platform_token(variable: str) -> str | None:
    """The token ``variable`` names (``CINEAMATE_ADMIN_TOKEN``, ...), else the local platform's."""
    return os.environ.get(variable) or _local_token(_home(), variable)


def _home() -> Path:
    return Path(os.environ.get("CINEAMATE_HOME", ".cineamate"))


def _local_entry(home: Path) -> str | None:
    try:
        return str(json.loads((home / "run.json").read_text())["entry"])
    except (OSError, ValueError, KeyError):
        return None


def _local_token(home: Path, variable: str) -> str | None:
    try:
        for line in (home / "tokens.env").read_text().splitlines():
            name, _, value = line.partition("=")
            if name == variable:
                return value
    except OSError:
        return None
    return None
