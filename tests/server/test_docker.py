"""The Docker files cannot be built here; check that they use CI's install entry point and valid serve options."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]


def serve_options() -> set[str]:
    import typer

    from cli.main import app

    command = typer.main.get_command(app).commands["serve"]
    return {opt for param in command.params for opt in param.opts}


def flags(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith("--")]


def instruction(text: str, name: str) -> list[str]:
    """The JSON (exec form) arguments of the last ``name`` instruction of a Dockerfile."""
    lines = [line for line in text.splitlines() if line.startswith(name + " ")]
    assert lines, f"no {name}"
    return json.loads(lines[-1][len(name) + 1:])


def test_ci_and_images_share_one_install_entry_point():
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\s*make test\b", ci, flags=re.M)  # CI: make test ...
    assert re.search(r"^test:\s*install\b", makefile, flags=re.M)  # ... which runs make install first
    python = re.search(r"^PYTHON \?= (\S+)", makefile, flags=re.M).group(1)
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert re.search(r"^RUN make install\b", text, flags=re.M), dockerfile.name
        assert "pip install" not in text  # no second, diverging install recipe
        assert re.search(r"^COPY \. \.$", text, flags=re.M)  # Makefile, constraints.txt, requirements, sources
        version = python.removeprefix("python")
        assert re.search(rf"^FROM python:{re.escape(version)}\b", text, flags=re.M), (dockerfile.name, python)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_vqnat_serve_with_real_options(dockerfile):
    text = dockerfile.read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vqnat"] == "cli.main:main"
    assert instruction(text, "ENTRYPOINT") == ["vqnat", "serve"]
    cmd = instruction(text, "CMD")
    assert set(flags(cmd)) <= serve_options()
    assert cmd[cmd.index("--nat") + 1].startswith("/models/")
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)  # the service does not run as root


def test_compose_serves_a_mounted_checkpoint_on_loopback():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"vqnat", "vqnat-cuda"}
    for name, service in compose["services"].items():
        assert (ROOT / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        assert set(flags(service["command"])) <= serve_options(), name
        mounts = service["volumes"]
        assert any(m.endswith(":/models:ro") for m in mounts), mounts  # read-only checkpoint mount
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), service["ports"]
        models = [a for a in service["command"] if a.startswith("/models/")]
        assert "/models/nat.pt" in models
