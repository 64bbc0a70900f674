"""Settings of the guardrails service (variables prefixed CINEAMATE_GUARDRAILS_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["GuardrailsSettings"]


class GuardrailsSettings(CommonSettings):
    """Shared settings plus the guardrails service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_GUARDRAILS_")

    port: int = setting(
        DEFAULT_PORTS["guardrails"], description="HTTP port of the guardrails service."
    )
    evaluation_interval_seconds: float = setting(
        10.0, description="How often every running experiment's guardrails are evaluated."
    )
    window_minutes: float = setting(
        15.0, description="Sliding window of event time the guardrails look at."
    )
    min_sample: int = setting(
        200,
        description="Calls (impressions for reward_drop) a check needs in the window before "
        "it can breach.",
    )
    consecutive_breaches: int = setting(
        2, description="Evaluations in a row a breach must hold before it acts."
    )
    reward_drop_alpha: float = setting(
        0.01, description="Significance level of the one-sided reward_drop test."
    )
    assignment_url: str = setting(
        "http://127.0.0.1:8001",
        description="Where the assignment service's API is, for rollbacks (admin token).",
    )
