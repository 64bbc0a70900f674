"""Settings of the decision service (variables prefixed CINEAMATE_DECISION_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cineamate.common.settings import DEFAULT_PORTS, CommonSettings, setting

__all__ = ["DecisionSettings"]


class DecisionSettings(CommonSettings):
    """Shared settings plus the decision service's own."""

    model_config = SettingsConfigDict(env_prefix="CINEAMATE_DECISION_")

    port: int = setting(DEFAULT_PORTS["decision"], description="HTTP port of the decision service.")
    evaluation_interval_seconds: float = setting(
        60.0, description="How often every running experiment's decision is evaluated and stored."
    )
    tuned_uplift: float = setting(
        0.10,
        description="Relative uplift the sequential test is tuned to detect fastest (its "
        "mixing scale); the error guarantee holds for any value.",
    )
