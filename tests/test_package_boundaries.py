"""Package boundaries, read from the source: what the distribution installs and who may import whom.

The distribution installs three import names: ``vqnat`` (the library), ``vqnat_cli`` (folder ``cli/``) and
``vqnat_server`` (folder ``server/``). The library imports none of the layers over it; benchmarks and recipes do
not import the tests; nothing imports the folder names ``cli`` or ``server`` as modules.
"""

from __future__ import annotations

import ast
import re
import subprocess
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


OUTSIDE_DOCUMENTS = re.compile(r"\bshared/|\b(STACK|BASELINES|DATA|STYLE)\.md\b|\bissues? #?\d+", re.IGNORECASE)
DOC_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".cfg"}


def repo_text_files() -> list[Path]:
    """Tracked code and docs (results/ holds measurements, not prose that cites)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / line for line in listed.splitlines() if not line.startswith(("results/", "models/"))]
    return [p for p in paths if p.is_file() and (p.suffix in DOC_SUFFIXES or p.name in {"Makefile", "Dockerfile"})]


def test_code_and_docs_cite_nothing_outside_the_repo():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for path in repo_text_files() if path.name != Path(__file__).name
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if OUTSIDE_DOCUMENTS.search(line)]
    assert not hits, "\n".join(hits)
