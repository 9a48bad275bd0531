"""Package boundaries, read from the source: what the distribution installs and who may import whom.

The distribution installs three import names: ``vqnat`` (the library), ``vqnat_cli`` (folder ``cli/``) and
``vqnat_server`` (folder ``server/``). The library imports none of the layers over it; benchmarks and recipes do
not import the tests; nothing imports the folder names ``cli`` or ``server`` as modules.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"vqnat_cli", "vqnat_server", "recipes", "benchmarks", "tests", "cli", "server"}


def imported_top_names(path: Path) -> set[str]:
    """The top-level module names a Python file imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_the_distribution_installs_three_distinct_import_names():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(config["packages"])
    assert {name.split(".")[0] for name in packages} == {"vqnat", "vqnat_cli", "vqnat_server"}
    assert config["package-dir"]["vqnat_cli"] == "cli" and config["package-dir"]["vqnat_server"] == "server"
    # every library subpackage on disk is installed (a new folder under vqnat/ is not silently left out)
    assert set(find_packages(str(ROOT), include=["vqnat", "vqnat.*"])) <= packages
    for folder in ("cli", "server"):
        assert not [p for p in (ROOT / folder).iterdir() if p.is_dir() and (p / "__init__.py").exists()], (
            f"{folder}/ has a subpackage: list it in pyproject.toml")


@pytest.mark.parametrize("path", python_files("vqnat"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_imports_no_layer_above_it(path):
    assert not imported_top_names(path) & LAYERS


@pytest.mark.parametrize("path", python_files("vqnat", "cli", "server", "benchmarks", "recipes", "tests", "docker"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_the_folder_names(path):
    assert not imported_top_names(path) & {"cli", "server"}


@pytest.mark.parametrize("path", python_files("cli", "server", "benchmarks", "recipes", "docker"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_tests_import_tests(path):
    assert "tests" not in imported_top_names(path)
