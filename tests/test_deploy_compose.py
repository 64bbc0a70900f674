"""The compose file: it parses, runs every process with a health check, sets every setting.

No Docker engine is needed: the file is read as YAML (merge keys resolved) and
checked against the same tables the local platform runs on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # comes with uvicorn[standard]

from cineamate.cli.settings_doc import all_settings_classes
from cineamate.common.settings import DEFAULT_PORTS, describe
from cineamate.stack.run import RunSettings
from cineamate.stack.services import PROCESS_NAMES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "compose"
STORES = ("kafka", "postgres", "redis")
JOBS = ("migrate", "topics")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


def test_compose_names_every_process_store_job_and_monitoring(services: dict[str, Any]) -> None:
    expected = {*PROCESS_NAMES, *STORES, *JOBS, "prometheus", "grafana"}
    assert set(services) == expected


def test_every_long_running_service_has_a_health_check(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in JOBS:
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"], name


def test_every_process_runs_the_image_and_checks_its_readiness(services: dict[str, Any]) -> None:
    for name in PROCESS_NAMES:
        service = services[name]
        assert service["command"] == ["serve", name]
        assert service["build"]["context"] == "../.."
        assert (COMPOSE / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        assert service["read_only"] is True
        assert f"http://127.0.0.1:{DEFAULT_PORTS[name]}/readyz" in " ".join(
            service["healthcheck"]["test"]
        )
    assert services["migrate"]["command"] == ["migrate"]
    assert services["topics"]["command"] == ["topics"]


def test_services_start_after_the_stores_are_prepared(services: dict[str, Any]) -> None:
    for name in PROCESS_NAMES:
        conditions = services[name]["depends_on"]
        if name == "gateway":
            assert set(conditions) == set(PROCESS_NAMES) - {"gateway"}
            assert {c["condition"] for c in conditions.values()} == {"service_healthy"}
        else:
            assert {k: v["condition"] for k, v in conditions.items()} == {
                job: "service_completed_successfully" for job in JOBS
            }


def test_the_public_entry_is_published_on_port_8000(services: dict[str, Any]) -> None:
    assert services["gateway"]["ports"] == [f"127.0.0.1:{DEFAULT_PORTS['gateway']}:8000"]


def test_every_setting_is_in_the_settings_file_or_the_environment(
    services: dict[str, Any],
) -> None:
    lines = (COMPOSE / "settings.env").read_text().splitlines()
    from_file = {line.partition("=")[0] for line in lines if line and not line.startswith("#")}
    for name in PROCESS_NAMES:
        environment = set(services[name]["environment"])
        assert services[name]["env_file"] == ["settings.env"]
        assert from_file.isdisjoint(environment)
        # `cineamate run` is the local supervisor, not a container.
        read = describe(*(c for c in all_settings_classes() if c is not RunSettings))
        assert {doc.variable for doc in read} - from_file - environment == set()


def test_prometheus_scrapes_every_process_as_a_job_of_its_name() -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {name: [f"{name}:{DEFAULT_PORTS[name]}"] for name in PROCESS_NAMES}


def test_grafana_is_provisioned_from_deploy_grafana(services: dict[str, Any]) -> None:
    mounts = {
        (COMPOSE / volume.split(":")[0]).resolve(): volume.split(":")[1]
        for volume in services["grafana"]["volumes"]
    }
    grafana = ROOT / "deploy" / "grafana"
    assert mounts[grafana / "provisioning"] == "/etc/grafana/provisioning"
    assert mounts[grafana / "dashboards"] == "/var/lib/grafana/dashboards/cineamate"
    variables = set(services["grafana"]["environment"])
    datasources = (grafana / "provisioning" / "datasources" / "cineamate.yml").read_text()
    for variable in ("CINEAMATE_GRAFANA_DB_HOST", "CINEAMATE_GRAFANA_PROMETHEUS_URL"):
        assert variable in datasources and variable in variables
