"""Generated documentation matches the code it is generated from."""

from __future__ import annotations

import json
from pathlib import Path

from cineamate.cli.schemas import render_schemas
from cineamate.cli.settings_doc import all_settings_classes, render_settings, update_readme
from cineamate.common.settings import describe

ROOT = Path(__file__).resolve().parents[1]


def test_settings_doc_lists_every_setting_with_its_default() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == render_settings(markdown=True), "run `make docs`"


def test_readme_settings_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme == update_readme(readme), "run `make docs`"


def test_every_setting_has_a_description() -> None:
    missing = [doc.variable for doc in describe(*all_settings_classes()) if not doc.description]
    assert missing == []


def test_event_schemas_are_current() -> None:
    for name, text in render_schemas().items():
        path = ROOT / "docs" / "schemas" / name
        assert path.exists(), f"{path} missing: run `make docs`"
        assert json.loads(path.read_text()) == json.loads(text), f"{name} is stale: run `make docs`"


def test_every_event_schema_requires_a_schema_version_of_one() -> None:
    for name, text in render_schemas().items():
        schema = json.loads(text)
        if name == "state_update.json":
            continue
        assert schema["properties"]["schema_version"]["const"] == 1, name


def test_readme_names_every_connection_variable_and_port() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL", "CINEAMATE_HOME"):
        assert variable in readme
    for port in range(8000, 8007):
        assert str(port) in readme
