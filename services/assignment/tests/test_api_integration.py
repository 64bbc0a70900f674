"""The assignment service over HTTP, run as its own process against the session's broker,
PostgreSQL and Redis: roles, validation, serving, the audit trail, change propagation
between instances, and clicks."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from cineamate.common.events import ClickEvent, ServeEvent
from cineamate.stack.processes import free_port
from cineamate.stack.testing import ADMIN, CLIENT, READ, read_topic

if TYPE_CHECKING:
    from conftest import AssignmentProcess, Launcher

pytestmark = pytest.mark.integration

CREDENTIALS: dict[str, dict[str, str]] = {
    "none": {},
    "client": CLIENT,
    "read": READ,
    "admin": ADMIN,
    "wrong token": {"Authorization": "Bearer not-a-known-token"},
    # A valid token under the wrong scheme.
    "malformed": {"Authorization": ADMIN["Authorization"].replace("Bearer ", "Token ")},
}
# Which presented role each required role admits, as auth.py defines it.
GRANTED = {"admin": {"admin"}, "read": {"read", "admin"}, "client": {"client"}}
PROPAGATION_LIMIT_SECONDS = 1.5


def _field(answer: httpx.Response) -> str:
    """The field a 422 names, without the ``body.`` of request-validation errors."""
    field: str = answer.json()["error"].get("field", "")
    return field.removeprefix("body.")


def _running_experiment(service: AssignmentProcess, **overrides: Any) -> str:
    experiment_id: str = service.create_experiment(**overrides)["id"]
    service.set_status(experiment_id, "running")
    return experiment_id


def test_each_route_admits_exactly_the_roles_auth_defines(assignment: AssignmentProcess) -> None:
    experiment_id = _running_experiment(assignment)
    doomed_id = _running_experiment(assignment)
    click = {"serve_id": "serve-1", "movie_id": 1, "user_id": "user-1"}
    recommendations = f"/api/movies/recommendations?experiment_id={experiment_id}&user_id=u1"
    # (method, path, required role, status on success, body)
    routes: list[tuple[str, str, str, int, Any]] = [
        ("POST", "/api/experiments", "admin", 201, assignment.experiment_body()),
        ("GET", "/api/experiments", "read", 200, None),
        ("GET", f"/api/experiments/{experiment_id}", "read", 200, None),
        ("PATCH", f"/api/experiments/{experiment_id}", "admin", 200, {"name": "renamed"}),
        ("POST", f"/api/experiments/{doomed_id}/stop", "admin", 200, None),
        ("GET", f"/api/experiments/{experiment_id}/audit", "read", 200, None),
        ("GET", recommendations, "client", 200, None),
        ("POST", "/api/events/clicks", "client", 202, click),
    ]
    mismatches = []
    for method, path, required, success, body in routes:
        for who, headers in CREDENTIALS.items():
            if who not in GRANTED:
                expected, code = 401, "unauthorized."
            elif who in GRANTED[required]:
                expected, code = success, None
            else:
                expected, code = 403, f"forbidden.{required}"
            answer = assignment.http.request(method, path, headers=headers, json=body)
            actual_code = answer.json().get("error", {}).get("code", "") if code else None
            if answer.status_code != expected or (code and not actual_code.startswith(code)):
                mismatches.append(
                    f"{method} {path} as {who}: expected {expected} {code or ''}, "
                    f"got {answer.status_code} {answer.text[:120]}"
                )
    assert not mismatches, "\n".join(mismatches)


def test_credentials_are_checked_before_the_body(assignment: AssignmentProcess) -> None:
    bodies = {"malformed JSON": b"{not json", "invalid experiment": b'{"name": ""}'}
    mismatches = []
    for who, expected in (("none", 401), ("wrong token", 401), ("read", 403), ("client", 403)):
        for kind, content in bodies.items():
            answer = assignment.http.post(
                "/api/experiments",
                content=content,
                headers=CREDENTIALS[who] | {"content-type": "application/json"},
            )
            if answer.status_code != expected:
                mismatches.append(
                    f"{kind} as {who}: expected {expected}, got {answer.status_code} "
                    f"{answer.json()['error']['code']}"
                )
    assert not mismatches, "\n".join(mismatches)


def test_each_invalid_experiment_is_422_naming_its_field(assignment: AssignmentProcess) -> None:
    base = assignment.experiment_body()
    control = {"name": "control", "type": "random", "control": True}

    def policies(*variants: dict[str, Any]) -> dict[str, Any]:
        return base | {"policies": list(variants)}

    cases: dict[str, tuple[dict[str, Any], str]] = {
        "zero weight": (
            policies(control, {"name": "ts", "type": "thompson", "weight": 0}),
            "policies.1.weight",
        ),
        "negative weight": (
            policies(control, {"name": "ts", "type": "thompson", "weight": -1}),
            "policies.1.weight",
        ),
        "no control": (
            policies({"name": "a", "type": "random"}, {"name": "b", "type": "thompson"}),
            "policies",
        ),
        "two controls": (
            policies(control, {"name": "ts", "type": "thompson", "control": True}),
            "policies",
        ),
        "traffic above 1": (base | {"traffic": 1.01}, "traffic"),
        "traffic below 0": (base | {"traffic": -0.1}, "traffic"),
        "unknown policy type": (
            policies(control, {"name": "ts", "type": "bandit9000"}),
            "policies.1.type",
        ),
        "empty catalogue": (base | {"catalogue": []}, "catalogue"),
        "item id beyond int64": (base | {"catalogue": [1, 2**63]}, "catalogue"),
        "NUL in the name": (base | {"name": "a\u0000b"}, "name"),
        "duplicate policy names": (
            policies(control, {"name": "ts", "type": "thompson"}, {"name": "ts", "type": "ucb1"}),
            "policies",
        ),
        "unknown named catalogue": (base | {"catalogue": "no-such-catalogue"}, "catalogue"),
        "bad policy params": (
            policies(control, {"name": "eg", "type": "egreedy", "params": {"epsilon": 2}}),
            "policies.1.params",
        ),
    }
    mismatches = []
    for case, (body, field) in cases.items():
        answer = assignment.http.post("/api/experiments", json=body, headers=ADMIN)
        if answer.status_code != 422 or _field(answer) != field:
            mismatches.append(
                f"{case}: expected 422 naming {field!r}, got {answer.status_code} "
                f"naming {answer.json().get('error', {}).get('field')!r}"
            )
    assert not mismatches, "\n".join(mismatches)
    listed = assignment.http.get("/api/experiments", headers=READ)
    assert listed.json() == [], "an invalid experiment was stored"


def test_each_invalid_update_is_rejected_naming_its_field(assignment: AssignmentProcess) -> None:
    created = assignment.create_experiment()
    path = f"/api/experiments/{created['id']}"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"weights": {"ts": 0}}, 422, "weights"),
        ({"weights": {"ghost": 1.0}}, 422, "weights.ghost"),
        ({"rolled_back": {"ghost": True}}, 422, "rolled_back.ghost"),
        ({"rolled_back": {"control": True}}, 422, "rolled_back.control"),
        ({"traffic": 2}, 422, "traffic"),
        ({"status": "finished"}, 422, "status"),
        ({"catalogue": [1, 2]}, 422, "catalogue"),
        ({"name": "a\u0000b"}, 422, "name"),  # PostgreSQL cannot store a NUL
    ]
    for body, status, field in cases:
        answer = assignment.http.patch(path, json=body, headers=ADMIN)
        assert answer.status_code == status, (body, answer.text)
        assert _field(answer) == field or _field(answer).startswith(f"{field}."), (
            body,
            answer.text,
        )
    transition = assignment.http.patch(path, json={"status": "paused"}, headers=ADMIN)
    assert transition.status_code == 409
    assert transition.json()["error"]["code"] == "conflict.transition"
    unchanged = assignment.http.get(path, headers=READ).json()
    assert (unchanged["status"], unchanged["revision"]) == ("draft", created["revision"])


def test_unknown_experiment_is_404_on_every_route(assignment: AssignmentProcess) -> None:
    path = "/api/experiments/exp_doesnotexist"
    answers = {
        "get": assignment.http.get(path, headers=READ),
        "audit": assignment.http.get(f"{path}/audit", headers=READ),
        "patch": assignment.http.patch(path, json={"name": "x"}, headers=ADMIN),
        "stop": assignment.http.post(f"{path}/stop", headers=ADMIN),
        "recommend": assignment.recommend("exp_doesnotexist", "user-1"),
    }
    for route, answer in answers.items():
        assert answer.status_code == 404, (route, answer.text)
        assert answer.json()["error"]["code"] == "not_found.experiment", route


async def test_each_recommendation_publishes_one_serve_event_equal_to_the_answer(
    assignment: AssignmentProcess,
) -> None:
    experiment_id = _running_experiment(assignment)
    draft_id: str = assignment.create_experiment()["id"]
    draft = assignment.recommend(draft_id, "user-1")
    assert draft.status_code == 409
    assert draft.json()["error"]["code"] == "conflict.not_running"

    requests: list[tuple[str, dict[str, Any], int, dict[str, str]]] = [
        ("user-1", {"device": "ios", "user_type": "new"}, 5, {"device": "ios", "user_type": "new"}),
        ("user-2", {"k": 3}, 3, {}),
        ("user-3", {"k": 12, "age": "25-34"}, 12, {"age": "25-34"}),
        ("user-1", {}, 5, {}),
    ]
    answers = []
    for user, params, size, cohort in requests:
        answer = assignment.recommend(experiment_id, user, **params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["experiment_id"], body["user_id"]) == (experiment_id, user)
        movie_ids = [item["movie_id"] for item in body["items"]]
        assert len(movie_ids) == size and len(set(movie_ids)) == size
        assert set(movie_ids) <= set(assignment.experiment_body()["catalogue"])
        assert [item["position"] for item in body["items"]] == list(range(size))
        assert all(0.0 < item["propensity"] <= 1.0 for item in body["items"])
        answers.append((body, cohort))

    env = assignment.env
    events = await read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["CINEAMATE_SERVES_TOPIC"],
        ServeEvent,
        expected=len(answers) + 1,  # one more than due, to see any extra within the timeout
        timeout=5.0,
    )
    assert len(events) == len(answers), [event.serve_id for event in events]
    by_serve = {event.serve_id: event for event in events}
    for body, cohort in answers:
        event = by_serve[body["serve_id"]]
        assert event.experiment_id == experiment_id
        assert (event.user_id, event.variant) == (body["user_id"], body["variant"])
        assert (event.policy_type, event.state_version) == (
            body["policy_type"],
            body["state_version"],
        )
        assert [item.item_id for item in event.items] == [i["movie_id"] for i in body["items"]]
        assert [item.position for item in event.items] == [i["position"] for i in body["items"]]
        assert [item.propensity for item in event.items] == [i["propensity"] for i in body["items"]]
        assert event.cohort == cohort
        assert event.status == "ok"


def test_too_many_cohort_attributes_are_rejected(assignment: AssignmentProcess) -> None:
    experiment_id = _running_experiment(assignment)
    cohort = {f"attribute{i}": "x" for i in range(11)}
    answer = assignment.recommend(experiment_id, "user-1", **cohort)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "query.cohort"


def test_users_keep_their_variant_and_see_the_control_while_paused(
    assignment: AssignmentProcess,
) -> None:
    experiment_id = _running_experiment(assignment)
    users = [f"user-{i}" for i in range(40)]

    def variants() -> dict[str, str]:
        found = {}
        for user in users:
            answer = assignment.recommend(experiment_id, user)
            assert answer.status_code == 200, answer.text
            found[user] = answer.json()["variant"]
        return found

    first = variants()
    assert set(first.values()) == {"control", "ts"}
    assert variants() == first
    assignment.set_status(experiment_id, "paused")
    assert set(variants().values()) == {"control"}
    assignment.set_status(experiment_id, "running")
    assert variants() == first
    assignment.set_status(experiment_id, "stopped")
    assert set(variants().values()) == {"control"}


def test_audit_trail_records_who_changed_what(assignment: AssignmentProcess) -> None:
    def as_actor(actor: str) -> dict[str, str]:
        return ADMIN | {"x-cineamate-actor": actor}

    created = assignment.http.post(
        "/api/experiments", json=assignment.experiment_body(), headers=as_actor("alice")
    )
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    path = f"/api/experiments/{experiment_id}"
    changes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PATCH", "bob", {"status": "running"}),
        ("PATCH", "carol", {"name": "renamed", "weights": {"ts": 1.0}}),
        ("STOP", "dave", None),
        ("PATCH", "", {"name": "after the stop"}),  # no actor header: recorded as "admin"
    ]
    for kind, actor, body in changes:
        headers = as_actor(actor) if actor else ADMIN
        if kind == "STOP":
            answer = assignment.http.post(f"{path}/stop", headers=headers)
        else:
            answer = assignment.http.patch(path, json=body, headers=headers)
        assert answer.status_code == 200, answer.text

    trail = assignment.http.get(f"{path}/audit", headers=READ)
    assert trail.status_code == 200, trail.text
    entries = trail.json()
    assert [e["action"] for e in entries] == ["create", "update", "update", "stop", "update"]
    assert [e["actor"] for e in entries] == ["alice", "bob", "carol", "dave", "admin"]
    assert entries[0]["before"] is None
    for previous, entry in itertools.pairwise(entries):
        assert entry["before"] == previous["after"]
        assert entry["after"]["revision"] == entry["before"]["revision"] + 1
        assert entry["changed_at"] >= previous["changed_at"]
    created_after, started, reweighted, stopped, renamed = (e["after"] for e in entries)
    assert (created_after["id"], created_after["status"]) == (experiment_id, "draft")
    assert (started["status"], started["started_at"] is not None) == ("running", True)
    policies_before = {p["name"]: p["weight"] for p in started["config"]["policies"]}
    policies_after = {p["name"]: p["weight"] for p in reweighted["config"]["policies"]}
    assert (policies_before["ts"], policies_after["ts"]) == (3.0, 1.0)
    assert (started["config"]["name"], reweighted["config"]["name"]) == (
        "assignment test",
        "renamed",
    )
    assert (stopped["status"], stopped["stopped_at"] is not None) == ("stopped", True)
    assert renamed["config"]["name"] == "after the stop"
    current = assignment.http.get(path, headers=READ).json()
    assert current["revision"] == renamed["revision"]


def _wait_for_variant(
    service: AssignmentProcess, experiment_id: str, user: str, variant: str, timeout: float
) -> float:
    """Seconds until ``service`` serves ``variant`` to ``user`` (polling), or fail."""
    started = time.perf_counter()
    seen = None
    while time.perf_counter() - started < timeout:
        answer = service.recommend(experiment_id, user)
        assert answer.status_code == 200, answer.text
        seen = answer.json()["variant"]
        if seen == variant:
            return time.perf_counter() - started
        time.sleep(0.01)
    raise AssertionError(f"still {seen!r} after {timeout:g} s, expected {variant!r}")


def test_a_change_reaches_another_instance_within_a_second(
    assignment: AssignmentProcess,
    assignment_env: dict[str, str],
    launch_assignment: Launcher,
    tmp_path: Path,
) -> None:
    other = launch_assignment(
        assignment_env
        | {
            "CINEAMATE_ASSIGNMENT_PORT": str(free_port()),
            "CINEAMATE_ASSIGNMENT_SPOOL_DIR": str(tmp_path / "spool-other"),
        }
    )
    experiment_id = _running_experiment(assignment)
    user = next(
        f"user-{i}"
        for i in range(1_000)
        if other.recommend(experiment_id, f"user-{i}").json()["variant"] == "ts"
    )
    # The other instance reloads experiments on its own only every 30 s (the default), so
    # anything faster is the change event.
    changes: list[tuple[str, str, float]] = []
    for status, variant in (("paused", "control"), ("running", "ts"), ("paused", "control")):
        started = time.perf_counter()
        assignment.set_status(experiment_id, status)
        waited = _wait_for_variant(other, experiment_id, user, variant, timeout=10.0)
        changes.append((status, variant, time.perf_counter() - started))
        assert waited <= time.perf_counter() - started
    print(
        "propagation to the other instance: "
        + ", ".join(f"{status} {seconds * 1000:.0f} ms" for status, _, seconds in changes)
    )
    for status, _, seconds in changes:
        assert seconds < PROPAGATION_LIMIT_SECONDS, (status, seconds)


async def test_clicks_are_accepted_and_published_with_their_movie_as_item(
    assignment_env: dict[str, str], launch_assignment: Launcher
) -> None:
    service = launch_assignment(
        assignment_env | {"CINEAMATE_ASSIGNMENT_MAX_CLICKS_PER_REQUEST": "5"}
    )
    clicked_at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    one = {
        "serve_id": "serve-one",
        "movie_id": 7,
        "user_id": "user-1",
        "ts": clicked_at.isoformat(),
    }
    batch = [{"serve_id": f"serve-{i}", "movie_id": 100 + i, "user_id": "user-2"} for i in range(3)]
    most = [{"serve_id": f"full-{i}", "movie_id": i, "user_id": "user-3"} for i in range(5)]
    too_many = [{"serve_id": f"over-{i}", "movie_id": i, "user_id": "user-4"} for i in range(6)]

    def post(body: Any) -> httpx.Response:
        return service.http.post("/api/events/clicks", json=body, headers=CLIENT)

    for body, accepted in ((one, 1), (batch, 3), (most, 5)):
        answer = post(body)
        assert (answer.status_code, answer.json()) == (202, {"accepted": accepted}), answer.text
    for body in (too_many, []):
        answer = post(body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == "body"

    sent = [one, *batch, *most]
    env = service.env
    events = await read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["CINEAMATE_CLICKS_TOPIC"],
        ClickEvent,
        expected=len(sent) + 1,  # one more than due, to see any extra within the timeout
        timeout=5.0,
    )
    assert sorted((e.serve_id, e.item_id, e.user_id) for e in events) == sorted(
        (c["serve_id"], c["movie_id"], c["user_id"]) for c in sent
    )
    by_serve = {event.serve_id: event for event in events}
    assert by_serve["serve-one"].clicked_at == clicked_at
