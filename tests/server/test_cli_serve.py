"""``vqnat serve``: options reach the server settings, bad checkpoints fail with one line and exit code 1."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app


@pytest.fixture
def captured_uvicorn(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append((target, kwargs)))
    return calls


def test_serve_builds_the_app_and_starts_uvicorn_on_loopback(tiny_checkpoints, captured_uvicorn):
    result = CliRunner().invoke(app, ["serve", "--nat", str(tiny_checkpoints.nat), "--teacher",
                                      str(tiny_checkpoints.teacher), "--trust-checkpoint", "--port", "8123",
                                      "--max-batch-sentences", "16", "--max-wait-ms", "3", "--api-key", "k"])
    assert result.exit_code == 0, result.output
    (target, kwargs), = captured_uvicorn
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    settings = target.state.settings
    assert settings.max_batch_sentences == 16 and settings.max_wait_ms == 3.0 and settings.api_key == "k"
    assert settings.checkpoints == {"nat": tiny_checkpoints.nat, "teacher": tiny_checkpoints.teacher}


def test_connection_limits_reach_uvicorn_with_safe_defaults(tiny_checkpoints, captured_uvicorn):
    from vqnat_server.connection import HeaderTimeoutProtocol
    from vqnat_server.settings import Settings

    result = CliRunner().invoke(app, ["serve", "--nat", str(tiny_checkpoints.nat), "--trust-checkpoint",
                                      "--header-timeout", "3", "--max-connections", "50", "--shutdown-timeout", "4"])
    assert result.exit_code == 0, result.output
    (target, kwargs), = captured_uvicorn
    assert kwargs["http"].func is HeaderTimeoutProtocol and kwargs["http"].keywords == {"header_timeout_s": 3.0}
    assert kwargs["limit_concurrency"] == 50 and kwargs["timeout_graceful_shutdown"] == 4.0
    defaults = Settings(nat=tiny_checkpoints.nat)
    assert kwargs["timeout_keep_alive"] == defaults.keep_alive_timeout_s
    assert kwargs["h11_max_incomplete_event_size"] == defaults.max_header_bytes
    assert defaults.shutdown_timeout_s < 10  # Docker's default stop grace period


def test_serve_with_workers_loads_no_model_in_the_parent(tiny_checkpoints, captured_uvicorn, monkeypatch):
    import vqnat_server.served
    from vqnat_server.settings import ENV_VAR, Settings

    monkeypatch.setenv(ENV_VAR, "")  # restored (removed) after the test; the CLI overwrites it
    monkeypatch.setattr(vqnat_server.served, "load_translators", lambda settings: pytest.fail("loaded in the parent"))
    result = CliRunner().invoke(app, ["serve", "--nat", str(tiny_checkpoints.nat), "--workers", "2",
                                      "--log-level", "warning"])
    assert result.exit_code == 0, result.output
    (target, kwargs), = captured_uvicorn
    assert target == "vqnat_server.app:create_app_from_env" and kwargs["factory"] and kwargs["workers"] == 2
    settings = Settings.from_env()
    assert settings.nat == tiny_checkpoints.nat and settings.log_level == "warning"


def test_the_parent_of_workers_does_not_import_torch(tiny_checkpoints):
    """The supervisor of --workers stays small: a fresh interpreter runs the CLI with uvicorn stubbed."""
    import subprocess
    import sys

    code = ("import sys, uvicorn; uvicorn.run = lambda *a, **k: None\n"
            "from vqnat_cli.main import app\n"
            f"app(['serve', '--nat', {str(tiny_checkpoints.nat)!r}, '--workers', '2'], standalone_mode=False)\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_worker_logs_at_the_servers_level(tiny_checkpoints, monkeypatch):
    import logging

    from vqnat_server.app import create_app_from_env
    from vqnat_server.settings import ENV_VAR, Settings

    monkeypatch.setenv(ENV_VAR, Settings(nat=tiny_checkpoints.nat, log_level="info").to_env())
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:
        root.setLevel(logging.DEBUG)
        create_app_from_env()
        assert root.level == logging.INFO
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


@pytest.fixture
def default_bundles(tmp_path, monkeypatch):
    """Empty default bundle folders (``vqnat serve`` without --nat/--teacher finds them); nothing is loaded."""
    import vqnat_server.served

    bundles = {"nat": tmp_path / "nat", "teacher": tmp_path / "teacher"}
    for path in bundles.values():
        path.mkdir()
    monkeypatch.setattr("vqnat.checkpoint.default_model", lambda role: bundles[role])
    monkeypatch.setattr(vqnat_server.served, "load_translators", lambda settings: {})
    return bundles


def test_without_models_the_default_bundles_are_served(default_bundles, captured_uvicorn):
    bundles = default_bundles
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    (target, kwargs), = captured_uvicorn
    assert target.state.settings.checkpoints == bundles


def test_without_models_or_default_bundles_the_error_is_one_line(tmp_path, captured_uvicorn, monkeypatch):
    from vqnat.checkpoint import MODELS_ENV

    monkeypatch.setenv(MODELS_ENV, str(tmp_path))  # an empty models folder
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1 and "nothing to serve" in result.output and not captured_uvicorn


def test_a_remote_address_needs_allow_remote(tiny_checkpoints, captured_uvicorn):
    args = ["serve", "--nat", str(tiny_checkpoints.nat), "--trust-checkpoint", "--host", "0.0.0.0"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "--allow-remote" in refused.output and not captured_uvicorn
    allowed = CliRunner().invoke(app, [*args, "--allow-remote"])
    assert allowed.exit_code == 0, allowed.output
    assert captured_uvicorn[0][1]["host"] == "0.0.0.0"


def test_untrusted_pickles_are_refused_without_the_flag(tmp_path, tiny_checkpoints, captured_uvicorn):
    import shutil

    copied = shutil.copy(tiny_checkpoints.nat, tmp_path / "nat.pt")  # outside its training folder
    result = CliRunner().invoke(app, ["serve", "--nat", str(copied)])
    assert result.exit_code == 1 and "--trust-checkpoint" in result.output and not captured_uvicorn


def test_a_non_ascii_api_key_fails_at_startup_with_one_line(tiny_checkpoints, captured_uvicorn):
    result = CliRunner().invoke(app, ["serve", "--nat", str(tiny_checkpoints.nat), "--api-key", "schlüssel"])
    assert result.exit_code == 1 and not captured_uvicorn
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and "ASCII" in errors[0], result.output


@pytest.mark.parametrize("make_args", [
    lambda tmp, ck: ["--nat", str(tmp / "missing.pt")],
    lambda tmp, ck: ["--teacher", str(tmp / "junk.pt")],
    lambda tmp, ck: ["--nat", str(ck.teacher), "--trust-checkpoint"],  # an autoregressive model given as the NAT
    lambda tmp, ck: ["--nat", str(ck.nat), "--device", "tpu"],
])
def test_bad_arguments_fail_with_one_line(tmp_path, tiny_checkpoints, captured_uvicorn, make_args):
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04 not a pickle")
    result = CliRunner().invoke(app, ["serve", *make_args(tmp_path, tiny_checkpoints)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert not captured_uvicorn


def test_serve_without_options_serves_with_the_settings_defaults(default_bundles, captured_uvicorn, monkeypatch):
    """Every option's default is the one Settings declares: nothing given, nothing differs."""
    import dataclasses

    from vqnat_server.settings import Settings

    monkeypatch.delenv("VQNAT_API_KEY", raising=False)
    monkeypatch.delenv("VQNAT_ALLOW_REMOTE", raising=False)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    (target, _), = captured_uvicorn
    served, expected = target.state.settings, Settings(**default_bundles)
    differing = [f.name for f in dataclasses.fields(Settings) if getattr(served, f.name) != getattr(expected, f.name)]
    assert differing == []
