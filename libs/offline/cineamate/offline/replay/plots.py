"""The replay's PNG plots: cumulative reward, regret and CTR per day, one line per policy."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt

from cineamate.offline.replay.log import DAY_SECONDS
from cineamate.offline.replay.run import ReplayResult

__all__ = ["write_plots"]


def write_plots(result: ReplayResult, out: Path) -> list[Path]:
    """``cumulative_reward.png``, ``regret.png`` and ``ctr_per_day.png`` in ``out``."""
    return [
        _lines(result, out / "cumulative_reward.png", "cumulative reward", "cumulative_reward"),
        _lines(result, out / "regret.png", "cumulative regret", "cumulative_regret"),
        _daily(result, out / "ctr_per_day.png"),
    ]


def _lines(result: ReplayResult, path: Path, label: str, attribute: str) -> Path:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for figures in result.figures:
        run = figures.runs[0]
        axes.plot(getattr(run, attribute), label=figures.policy, linewidth=1.2)
    axes.set_xlabel("matched events (first seed)")
    axes.set_ylabel(label)
    axes.set_title(f"{label.capitalize()}, {result.window.label()}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _daily(result: ReplayResult, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for figures in result.figures:
        days = sorted(figures.daily_ctr)
        dates = np.array([day * DAY_SECONDS for day in days], dtype="datetime64[s]")
        axes.plot(dates, [figures.daily_ctr[d] for d in days], label=figures.policy, marker=".")
    axes.set_ylabel("replay CTR")
    axes.set_title("CTR per day (all seeds)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
