"""Uninstall from this Python's environment every distribution that serving vqnat does not need.

The images build their virtual environment with ``make install``, CI's install (the pinned torch, fairseq built
against it, the project, and the test and data packages). The serving stage keeps only vqnat and the closure of the
dependencies in pyproject.toml (markers evaluated for this interpreter, no extras), plus pip:

    .venv/bin/python docker/prune_venv.py             # uninstall the rest
    .venv/bin/python docker/prune_venv.py --dry-run   # list it
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ALWAYS_KEPT = frozenset({"pip", "vqnat"})
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def project_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml (requirement strings)."""
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]


def _wanted(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


def requirement_closure(requirements: Iterable[str]) -> set[str]:
    """Canonical names of the installed distributions that ``requirements`` need, directly or not."""
    kept: set[str] = set()
    todo = [r.name for r in map(Requirement, requirements) if _wanted(r)]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in kept:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement of another platform, or one the installer left out on purpose
        kept.add(name)
        todo += [r.name for r in map(Requirement, dist.requires or []) if _wanted(r)]
    return kept


def removable(requirements: Iterable[str]) -> list[str]:
    """Installed distributions outside the closure of ``requirements`` (and not pip or vqnat), sorted."""
    kept = requirement_closure(requirements) | ALWAYS_KEPT
    installed = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()}
    return sorted(installed - kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print what would be uninstalled")
    args = parser.parse_args(argv)
    names = removable(project_dependencies())
    if args.dry_run or not names:
        print("\n".join(names))
        return 0
    return subprocess.call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *names])


if __name__ == "__main__":
    sys.exit(main())
