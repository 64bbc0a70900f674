"""Every package folder is part of the distribution, so installs outside the checkout work."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_folders() -> dict[str, Path]:
    found = {}
    for init in [
        *ROOT.glob("libs/*/cineamate/**/__init__.py"),
        *ROOT.glob("services/*/cineamate/**/__init__.py"),
    ]:
        folder = init.parent
        namespace_root = next(p for p in folder.parents if p.name == "cineamate")
        dotted = "cineamate." + ".".join(folder.relative_to(namespace_root).parts)
        found[dotted] = folder
    return found


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(config["packages"]) == sorted(_package_folders())


def test_every_top_level_package_maps_to_its_folder() -> None:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for dotted, folder in _package_folders().items():
        if dotted.count(".") == 1:
            assert (ROOT / package_dir[dotted]).resolve() == folder.resolve()


def test_no_cineamate_namespace_init_exists() -> None:
    # `cineamate` is a namespace spread over many folders; an __init__.py would hide the others.
    assert not list(ROOT.glob("*/*/cineamate/__init__.py"))
