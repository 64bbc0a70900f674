"""Migration files are read in version order, strictly named, and fingerprinted by their SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from cineamate.common.errors import ConfigError
from cineamate.common.postgres import Migration, load_migrations
from cineamate.migrations import SQL_DIRECTORY


def _write(directory: Path, name: str, sql: str = "SELECT 1;") -> None:
    (directory / name).write_text(sql)


def test_migrations_are_ordered_by_version(tmp_path: Path) -> None:
    _write(tmp_path, "0010_add_index.sql", "CREATE INDEX i ON t (a);")
    _write(tmp_path, "0002_add_column.sql", "ALTER TABLE t ADD b int;")
    _write(tmp_path, "0001_create_table.sql", "CREATE TABLE t (a int);")

    migrations = load_migrations(tmp_path)

    assert [(m.version, m.name) for m in migrations] == [
        (1, "create_table"),
        (2, "add_column"),
        (10, "add_index"),
    ]
    assert migrations[0].sql == "CREATE TABLE t (a int);"


def test_files_other_than_sql_are_not_migrations(tmp_path: Path) -> None:
    _write(tmp_path, "0001_create_table.sql")
    _write(tmp_path, "README.md", "# notes")

    assert [m.version for m in load_migrations(tmp_path)] == [1]


def test_empty_directory_has_no_migrations(tmp_path: Path) -> None:
    assert load_migrations(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    [
        "1_create.sql",
        "00001_create.sql",
        "0001-create.sql",
        "0001_Create.sql",
        "0001_.sql",
        "0001_add column.sql",
        "create.sql",
    ],
)
def test_badly_named_sql_file_is_refused_by_name(tmp_path: Path, name: str) -> None:
    _write(tmp_path, "0001_fine.sql")
    _write(tmp_path, name)

    with pytest.raises(ConfigError) as caught:
        load_migrations(tmp_path)

    assert name in str(caught.value)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "0001_create_table.sql")
    _write(tmp_path, "0002_add_column.sql")
    _write(tmp_path, "0002_add_index.sql")

    with pytest.raises(ConfigError, match="duplicate"):
        load_migrations(tmp_path)


def test_checksum_changes_when_the_sql_changes(tmp_path: Path) -> None:
    path = tmp_path / "0001_create_table.sql"
    path.write_text("CREATE TABLE t (a int);")
    [original] = load_migrations(tmp_path)
    [reread] = load_migrations(tmp_path)

    path.write_text("CREATE TABLE t (a bigint);")
    [edited] = load_migrations(tmp_path)

    assert reread.checksum == original.checksum
    assert edited.checksum != original.checksum


def test_checksum_depends_on_the_sql_only() -> None:
    first = Migration(1, "create_table", "CREATE TABLE t (a int);")
    renamed = Migration(2, "make_table", "CREATE TABLE t (a int);")
    spaced = Migration(1, "create_table", "CREATE TABLE t (a int); ")

    assert renamed.checksum == first.checksum
    assert spaced.checksum != first.checksum


def test_shipped_migrations_are_well_named_and_not_empty() -> None:
    migrations = load_migrations(SQL_DIRECTORY)

    assert migrations
    assert all(m.sql.strip() for m in migrations)
