"""Experiments and catalogues in PostgreSQL; every change is audited in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import orjson

from cineamate.assignment.bucketing import Allocation
from cineamate.assignment.service import ChangedExperiment
from cineamate.common.errors import InvalidInput, NotFound
from cineamate.common.experiments import Experiment, ExperimentConfig

__all__ = ["ExperimentStore", "catalogue_titles"]


def _new_id() -> str:
    return f"exp_{uuid.uuid4().hex[:12]}"


def _snapshot(experiment: Experiment) -> str:
    return experiment.model_dump_json()


class ExperimentStore:
    """Reads and audited writes of the experiments table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, config: ExperimentConfig, allocation: Allocation, *, actor: str
    ) -> Experiment:
        experiment_id = _new_id()
        async with self._pool.acquire() as connection, connection.transaction():
            if isinstance(config.catalogue, str):
                count = await connection.fetchval(
                    "SELECT count(*) FROM catalogue_items WHERE catalogue = $1", config.catalogue
                )
                if not count:
                    raise InvalidInput(
                        f"no catalogue named {config.catalogue!r} is loaded", field="body.catalogue"
                    )
            row = await connection.fetchrow(
                "INSERT INTO experiments (id, name, status, config, allocation, salt) "
                "VALUES ($1, $2, 'draft', $3::jsonb, $4::jsonb, $1) RETURNING *",
                experiment_id,
                config.name,
                config.model_dump_json(),
                orjson.dumps(allocation.to_json()).decode(),
            )
            experiment = Experiment.from_row(row)
            await self._audit(connection, experiment_id, actor, "create", None, experiment)
        return experiment

    async def get(self, experiment_id: str) -> Experiment | None:
        row = await self._pool.fetchrow("SELECT * FROM experiments WHERE id = $1", experiment_id)
        return None if row is None else Experiment.from_row(row)

    async def get_or_raise(self, experiment_id: str) -> Experiment:
        experiment = await self.get(experiment_id)
        if experiment is None:
            raise NotFound(f"no experiment {experiment_id!r}", code="not_found.experiment")
        return experiment

    async def all(self, status: str | None = None) -> list[Experiment]:
        if status is None:
            rows = await self._pool.fetch("SELECT * FROM experiments ORDER BY created_at DESC")
        else:
            rows = await self._pool.fetch(
                "SELECT * FROM experiments WHERE status = $1 ORDER BY created_at DESC", status
            )
        return [Experiment.from_row(row) for row in rows]

    async def update(
        self,
        experiment_id: str,
        change: Callable[[Experiment, datetime], ChangedExperiment],
        *,
        actor: str,
        action: str,
    ) -> tuple[Experiment, Experiment]:
        """Apply ``change`` under a row lock; returns (before, after)."""
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT * FROM experiments WHERE id = $1 FOR UPDATE", experiment_id
            )
            if row is None:
                raise NotFound(f"no experiment {experiment_id!r}", code="not_found.experiment")
            before = Experiment.from_row(row)
            changed = change(before, datetime.now(UTC))
            row = await connection.fetchrow(
                "UPDATE experiments SET name = $2, status = $3, config = $4::jsonb, "
                "allocation = $5::jsonb, started_at = $6, stopped_at = $7, "
                "revision = revision + 1, updated_at = now() WHERE id = $1 RETURNING *",
                experiment_id,
                changed.config.name,
                changed.status,
                changed.config.model_dump_json(),
                orjson.dumps(changed.allocation.to_json()).decode(),
                changed.started_at,
                changed.stopped_at,
            )
            after = Experiment.from_row(row)
            await self._audit(connection, experiment_id, actor, action, before, after)
        return before, after

    async def audit_trail(self, experiment_id: str) -> list[dict[str, object]]:
        rows = await self._pool.fetch(
            "SELECT actor, action, changed_at, before, after FROM experiment_audit "
            "WHERE experiment_id = $1 ORDER BY id",
            experiment_id,
        )
        return [
            {
                "actor": row["actor"],
                "action": row["action"],
                "changed_at": row["changed_at"],
                "before": orjson.loads(row["before"]) if row["before"] else None,
                "after": orjson.loads(row["after"]) if row["after"] else None,
            }
            for row in rows
        ]

    @staticmethod
    async def _audit(
        connection: asyncpg.Connection,
        experiment_id: str,
        actor: str,
        action: str,
        before: Experiment | None,
        after: Experiment,
    ) -> None:
        await connection.execute(
            "INSERT INTO experiment_audit (experiment_id, actor, action, before, after) "
            "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)",
            experiment_id,
            actor,
            action,
            None if before is None else _snapshot(before),
            _snapshot(after),
        )


async def catalogue_titles(pool: asyncpg.Pool, catalogue: list[int] | str) -> dict[int, str]:
    """Titles of a named catalogue's items (empty for a literal list of ids)."""
    if isinstance(catalogue, list):
        return {}
    rows = await pool.fetch(
        "SELECT item_id, title FROM catalogue_items WHERE catalogue = $1", catalogue
    )
    return {row["item_id"]: row["title"] or "" for row in rows}
