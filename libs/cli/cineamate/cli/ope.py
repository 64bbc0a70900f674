"""``cineamate ope``: off-policy estimates of a target policy on logged feedback.

    cineamate ope --log log.parquet --target target.npy --out results/ \\
        --action-col item --context-cols age,gender

The logic lives in ``cineamate.offline.ope``; this module maps flags to it. The
column flags are shared with other commands that read logged feedback
(``add_column_arguments`` and ``column_map``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cineamate.offline.logged import ColumnMap

__all__ = ["add_column_arguments", "add_ope_command", "column_map"]


def add_ope_command(commands: Any) -> None:
    """Register the command on the top-level parser."""
    ope = commands.add_parser(
        "ope",
        help="off-policy estimates of a target policy on a logged file",
        description=(
            "Estimate a target policy's value (DM, IPS, SNIPS, DR) from logged bandit feedback. "
            "The target is a .npy array of action probabilities per logged round, shape "
            "(rounds, actions) or (rounds, actions, positions)."
        ),
    )
    ope.add_argument("--log", type=Path, required=True, help="CSV or Parquet log")
    ope.add_argument("--target", type=Path, required=True, help="target probabilities (.npy)")
    ope.add_argument("--out", type=Path, required=True, help="folder for results.json")
    add_column_arguments(ope)
    ope.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    ope.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    ope.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    ope.set_defaults(handler=_ope)


def add_column_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that name a log's columns (``--time-col`` ... ``--context-cols``)."""
    parser.add_argument("--time-col", default="time")
    parser.add_argument("--action-col", default="action", help="integer action ids 0..n-1")
    parser.add_argument("--position-col", default="position", help="optional slate position")
    parser.add_argument("--reward-col", default="reward")
    parser.add_argument("--propensity-col", default="propensity", help="logging probability")
    parser.add_argument("--context-cols", default="", help="context columns: a,b,c")


def column_map(args: argparse.Namespace) -> ColumnMap:
    """The ``ColumnMap`` the column flags describe."""
    from cineamate.offline.logged import ColumnMap

    return ColumnMap(
        time=args.time_col,
        action=args.action_col,
        position=args.position_col,
        reward=args.reward_col,
        propensity=args.propensity_col,
        context=tuple(name.strip() for name in args.context_cols.split(",") if name.strip()),
    )


def _ope(args: argparse.Namespace) -> int:
    from cineamate.offline.ope import RESULTS_FILE, format_table, run_ope

    result = run_ope(
        args.log,
        column_map(args),
        args.target,
        args.out,
        folds=args.folds,
        seed=args.seed,
        level=args.level,
    )
    print(format_table(result))
    print(f"\nwrote {args.out / RESULTS_FILE}")
    return 0
