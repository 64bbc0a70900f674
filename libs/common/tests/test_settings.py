"""Settings are read from the environment, fail loudly by variable name, and keep secrets."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from cineamate.analytics import AnalyticsSettings
from cineamate.assignment import AssignmentSettings
from cineamate.common.errors import ConfigError
from cineamate.common.settings import (
    SERVICE_NAMES,
    CommonSettings,
    ProcessSettings,
    TopicSpec,
    describe,
    env_name,
    load_settings,
)
from cineamate.decision import DecisionSettings
from cineamate.guardrails import GuardrailsSettings
from cineamate.policy import PolicySettings
from cineamate.reward import RewardSettings

SETTINGS_BY_SERVICE: dict[str, type[CommonSettings]] = {
    "assignment": AssignmentSettings,
    "policy": PolicySettings,
    "reward": RewardSettings,
    "guardrails": GuardrailsSettings,
    "decision": DecisionSettings,
    "analytics": AnalyticsSettings,
}


def _variables(cls: type[BaseSettings]) -> dict[str, str]:
    return {name: env_name(cls, name, field) for name, field in cls.model_fields.items()}


def test_every_service_has_a_settings_class_under_test() -> None:
    assert set(SETTINGS_BY_SERVICE) == set(SERVICE_NAMES)


@pytest.mark.parametrize("variable", ["KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"])
def test_missing_connection_url_names_the_variable(
    service_env: pytest.MonkeyPatch, variable: str
) -> None:
    service_env.delenv(variable)

    with pytest.raises(ConfigError) as caught:
        load_settings(AssignmentSettings)

    assert str(caught.value).startswith(f"{variable} is not set (")
    assert caught.value.field == variable
    assert caught.value.code == "invalid.config"


def test_missing_database_url_message_quotes_the_setting_description(
    service_env: pytest.MonkeyPatch,
) -> None:
    service_env.delenv("DATABASE_URL")

    with pytest.raises(ConfigError) as caught:
        load_settings(DecisionSettings)

    description = DecisionSettings.model_fields["database_url"].description
    assert description
    assert str(caught.value) == f"DATABASE_URL is not set ({description})"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_invalid_service_port_names_the_prefixed_variable(
    service_env: pytest.MonkeyPatch, service: str
) -> None:
    variable = f"CINEAMATE_{service.upper()}_PORT"
    service_env.setenv(variable, "not-a-port")

    with pytest.raises(ConfigError) as caught:
        load_settings(SETTINGS_BY_SERVICE[service])

    assert str(caught.value).startswith(f"{variable} is invalid: ")
    assert caught.value.field == variable


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CINEAMATE_LOG_LEVEL", "LOUD"),
        ("CINEAMATE_LOG_FORMAT", "xml"),
        ("CINEAMATE_SERVES_PARTITIONS", "six"),
        ("CINEAMATE_READINESS_TIMEOUT_SECONDS", "soon"),
    ],
)
def test_invalid_shared_setting_names_the_unprefixed_variable(
    service_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    service_env.setenv(variable, value)

    with pytest.raises(ConfigError) as caught:
        load_settings(RewardSettings)

    assert str(caught.value).startswith(f"{variable} is invalid: ")


def test_service_port_is_read_from_its_own_prefix_only(service_env: pytest.MonkeyPatch) -> None:
    service_env.setenv("CINEAMATE_ASSIGNMENT_PORT", "9101")

    assignment = load_settings(AssignmentSettings)
    decision = load_settings(DecisionSettings)

    assert assignment.port == 9101
    assert decision.port != 9101


def test_shared_setting_is_read_from_one_name_by_every_service(
    service_env: pytest.MonkeyPatch,
) -> None:
    service_env.setenv("CINEAMATE_LOG_LEVEL", "DEBUG")
    service_env.setenv("CINEAMATE_ASSIGNMENT_CLICKS_TOPIC", "ignored-clicks")

    for cls in SETTINGS_BY_SERVICE.values():
        settings = load_settings(cls)
        assert settings.log_level == "DEBUG", cls.__name__
        assert settings.clicks_topic == "clicks", cls.__name__


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
        ("database_url", "DATABASE_URL"),
        ("redis_url", "REDIS_URL"),
    ],
)
@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_connection_urls_use_conventional_unprefixed_names(
    service: str, field: str, variable: str
) -> None:
    assert _variables(SETTINGS_BY_SERVICE[service])[field] == variable


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_shared_fields_have_the_same_cineamate_name_in_every_service(service: str) -> None:
    variables = _variables(SETTINGS_BY_SERVICE[service])

    assert variables["log_level"] == "CINEAMATE_LOG_LEVEL"
    for field in CommonSettings.model_fields:
        assert variables[field] == _variables(CommonSettings)[field]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_field_takes_the_service_prefix(service: str) -> None:
    assert _variables(SETTINGS_BY_SERVICE[service])["port"] == f"CINEAMATE_{service.upper()}_PORT"


def test_describe_marks_exactly_the_credentials_as_secret() -> None:
    docs = describe(*SETTINGS_BY_SERVICE.values())

    assert {doc.variable for doc in docs if doc.secret} == {
        "DATABASE_URL",
        "REDIS_URL",
        "CINEAMATE_ADMIN_TOKEN",
        "CINEAMATE_READ_TOKEN",
        "CINEAMATE_CLIENT_KEY",
    }


def test_describe_lists_each_variable_once_across_services() -> None:
    classes: list[type[BaseSettings]] = [ProcessSettings, *SETTINGS_BY_SERVICE.values()]

    variables = [doc.variable for doc in describe(*classes)]

    assert len(variables) == len(set(variables))
    expected = {variable for cls in classes for variable in _variables(cls).values()}
    assert set(variables) == expected
    ports = {variable for variable in variables if variable.endswith("_PORT")}
    assert ports == {f"CINEAMATE_{service.upper()}_PORT" for service in SERVICE_NAMES}


def test_describe_shows_required_variables_and_defaults() -> None:
    docs = {doc.variable: doc for doc in describe(AssignmentSettings)}

    assert docs["DATABASE_URL"].default == "(required)"
    assert docs["CINEAMATE_LOG_LEVEL"].default == "INFO"
    assert all(doc.description for doc in docs.values())


def test_topics_are_the_platform_topics_with_configured_partitions(
    service_env: pytest.MonkeyPatch,
) -> None:
    service_env.setenv("CINEAMATE_SERVES_TOPIC", "serves-x")
    service_env.setenv("CINEAMATE_SERVES_PARTITIONS", "12")
    service_env.setenv("CINEAMATE_CLICKS_PARTITIONS", "11")
    service_env.setenv("CINEAMATE_REWARDS_PARTITIONS", "7")
    service_env.setenv("CINEAMATE_LATE_CLICKS_PARTITIONS", "4")
    service_env.setenv("CINEAMATE_STATE_UPDATES_PARTITIONS", "3")
    service_env.setenv("CINEAMATE_DEAD_LETTER_PARTITIONS", "2")

    topics = load_settings(PolicySettings).topics()

    assert topics == [
        TopicSpec("serves-x", 12),
        TopicSpec("clicks", 11),
        TopicSpec("rewards", 7),
        TopicSpec("late-clicks", 4),
        TopicSpec("state-updates", 3),
        TopicSpec("dead-letter", 2),
    ]


def test_secrets_are_read_but_never_shown_in_repr(service_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(AnalyticsSettings)

    assert "db-password-41" in settings.database_url.get_secret_value()
    assert "redis-password-42" in settings.redis_url.get_secret_value()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "db-password-41" not in shown
        assert "redis-password-42" not in shown
