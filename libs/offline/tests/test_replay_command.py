"""``cineamate replay`` end to end on small synthetic MovieLens and on a logged CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cineamate.cli.main import main
from cineamate.offline.replay.report import ESTIMATOR_NAMES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    assert main(["dataset", "synth", "--out", str(folder), "--scale", "0.1", "--seed", "3"]) == 0
    return folder


def test_replay_writes_the_report_the_table_and_the_plots(
    synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        ["replay", "--data", str(synthetic), "--window", "auto", "--seeds", "2", "--out", str(out)]
    )
    assert code == 0
    assert "window " in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"thompson", "egreedy", "ucb1", "random", "popularity"}
    assert results["window"]["events"] > 0 and results["best_item_true_ctr"] is not None
    for figures in results["policies"].values():
        assert figures["seeds"] == [0, 1]
        for name in ESTIMATOR_NAMES:
            estimate = figures["estimators"][name]
            assert set(estimate) == {"value", "ci_low", "ci_high"}
            if estimate["value"] is not None:
                assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]
        assert 0.0 <= figures["true_ctr"] <= 1.0
    report = (out / "report.md").read_text()
    assert "| Policy | CTR (replay) | Regret | IPS | SNIPS | DR |" in report
    assert "unbiased only when the log was collected uniformly at random" in report
    for plot in ("cumulative_reward.png", "regret.png", "ctr_per_day.png"):
        assert (out / plot).read_bytes().startswith(PNG_MAGIC)
    steps = (out / "steps.csv").read_text().splitlines()
    assert steps[0].startswith("policy,seed,step,event,time,item,reward")
    matched = sum(1 for line in steps[1:] if line.startswith("egreedy,"))
    assert matched > 0


def test_replay_reads_logged_feedback_with_its_propensities(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["ts,arm,clicked,prob,segment"]
    for event in range(4_000):
        arm = int(rng.integers(0, 8))
        clicked = int(rng.random() < 0.1 + 0.1 * arm)
        rows.append(f"{1_000_000 + event},{arm},{clicked},0.125,{'ab'[event % 2]}")
    log = tmp_path / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = main(
        [
            "replay", "--data", str(log), "--window", "all", "--k", "2", "--seeds", "1",
            "--baselines", "", "--time-col", "ts", "--action-col", "arm",
            "--reward-col", "clicked", "--propensity-col", "prob", "--context-cols", "segment",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["logging_propensity"]["source"] == "logged"
    assert results["window"]["items"] == 8
    assert set(results["policies"]) == {"thompson", "egreedy", "ucb1"}


def test_an_unknown_policy_is_one_clear_error(
    synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["replay", "--data", str(synthetic), "--policies", "softmax", "--out", str(tmp_path)]
    )
    assert code == 1
    assert "unknown policy 'softmax'" in capsys.readouterr().err
