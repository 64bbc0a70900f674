"""JSON Schema files of the event models, for producers written in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from cineamate.common.events import EVENT_MODELS, state_update_adapter

__all__ = ["render_schemas", "write_schemas"]


def render_schemas() -> dict[str, str]:
    """File name -> JSON text of each schema."""
    schemas = {f"{name}.json": model.model_json_schema() for name, model in EVENT_MODELS.items()}
    schemas["state_update.json"] = state_update_adapter.json_schema()
    return {
        name: json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in schemas.items()
    }


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
