"""Error rates of the decision engine and the guardrails, by simulation (fixed seeds).

- A/A: experiments with no true difference, evaluated every hour of event time
  for 14 days with the default criteria; the share that ever ships.
- A/B: a true relative uplift of 10% at a 2% base CTR, 5,000 users a day per
  variant; the share that ships within 14 days and the median day it does.
- SRM: a configured 50/50 split observed as 50.5/49.5 at 200,000 users, and an
  exact 50/50; the chi-square p-value of each (flagged below 0.001).
- Guardrails: variants without real harm (0.2% errors, 20 ms median latency,
  the control's CTR) over pairs of consecutive noisy 15-minute windows of
  2,000 serves; the share rolled back. And the share of harmed variants (5%
  errors) that are.
"""

from __future__ import annotations

import time

import numpy as np

from bench._registry import Details, Figures, RunOptions, add_target, benchmark
from cineamate.decision.sequential import sample_ratio_mismatch
from cineamate.decision.simulate import simulate
from cineamate.guardrails.simulate import rolled_back

SEED = 20_260_301
_SPEC = "spec: issue 7, validation by simulation"


@benchmark("decision")
def run(options: RunOptions) -> tuple[Figures, Details]:
    """A/A and A/B ship rates, SRM p-values and guardrail false rollbacks."""
    experiments = options.repeats(1_000, 200)
    windows = options.repeats(1_000, 300)
    started = time.perf_counter()
    aa = simulate(experiments, base_ctr=0.02, uplift=0.0, users_per_day=5_000, seed=SEED)
    ab = simulate(experiments, base_ctr=0.02, uplift=0.10, users_per_day=5_000, seed=SEED + 1)
    simulated_s = time.perf_counter() - started
    configured = {"control": 0.5, "treatment": 0.5}
    skewed = sample_ratio_mismatch({"control": 101_000, "treatment": 99_000}, configured)
    even = sample_ratio_mismatch({"control": 100_000, "treatment": 100_000}, configured)
    assert skewed is not None and even is not None
    rng = np.random.default_rng(SEED + 2)
    false_rollbacks = sum(rolled_back(rng) for _ in range(windows))
    caught = sum(rolled_back(rng, error_rate=0.05) for _ in range(windows // 10))
    figures: Figures = {
        "decision_aa_ship_share": aa.ship_share,
        "decision_aa_kill_share": aa.kill_share,
        "decision_ab_ship_share": ab.ship_share,
        "decision_ab_median_ship_day": ab.median_ship_day or float("nan"),
        "decision_srm_p_skewed": skewed.p_value,
        "decision_srm_flagged_skewed": float(skewed.mismatch),
        "decision_srm_flagged_even": float(even.mismatch),
        "guardrail_false_rollback_share": false_rollbacks / windows,
        "guardrail_harm_caught_share": caught / (windows // 10),
    }
    details: Details = {
        "config": {
            "experiments": experiments,
            "windows": windows,
            "evaluations": "hourly for 14 days",
            "base_ctr": 0.02,
            "users_per_day_per_variant": 5_000,
            "ab_uplift": 0.10,
        },
        "simulated_s": simulated_s,
        "ab_ship_days": sorted(ab.ship_days),
    }
    add_target(details, figures, "decision_aa_ship_share", 0.05, _SPEC)
    add_target(details, figures, "guardrail_false_rollback_share", 0.01, _SPEC)
    return figures, details
