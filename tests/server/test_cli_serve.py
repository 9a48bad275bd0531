"""``vqnat serve``: options reach the server settings, bad checkpoints fail with one line and exit code 1."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.fixture
def captured_uvicorn(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append((target, kwargs)))
    return calls


def test_serve_builds_the_app_and_starts_uvicorn_on_loopback(tiny_checkpoints, captured_uvicorn):
    result = CliRunner().invoke(app, ["serve", "--nat", str(tiny_checkpoints.nat), "--teacher",
                                      str(tiny_checkpoints.teacher), "--port", "8123", "--max-batch-sentences", "16",
                                      "--max-wait-ms", "3", "--api-key", "k"])
    assert result.exit_code == 0, result.output
    (target, kwargs), = captured_uvicorn
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    settings = target.state.settings
    assert settings.max_batch_sentences == 16 and settings.max_wait_ms == 3.0 and settings.api_key == "k"
    assert settings.checkpoints == {"nat": tiny_checkpoints.nat, "teacher": tiny_checkpoints.teacher}


def test_serve_with_workers_passes_settings_to_each_worker(tiny_checkpoints, captured_uvicorn, monkeypatch):
    from server.settings import ENV_VAR, Settings

    monkeypatch.setenv(ENV_VAR, "")  # restored (removed) after the test; the CLI overwrites it
    result = CliRunner().invoke(app, ["serve", "--nat", str(tiny_checkpoints.nat), "--workers", "2"])
    assert result.exit_code == 0, result.output
    (target, kwargs), = captured_uvicorn
    assert target == "server.app:create_app_from_env" and kwargs["factory"] and kwargs["workers"] == 2
    assert Settings.from_env().nat == tiny_checkpoints.nat


@pytest.mark.parametrize("make_args", [
    lambda tmp, ck: ["--nat", str(tmp / "missing.pt")],
    lambda tmp, ck: ["--teacher", str(tmp / "junk.pt")],
    lambda tmp, ck: ["--nat", str(ck.teacher)],  # an autoregressive model given as the NAT model
    lambda tmp, ck: [],
    lambda tmp, ck: ["--nat", str(ck.nat), "--device", "tpu"],
])
def test_bad_arguments_fail_with_one_line(tmp_path, tiny_checkpoints, captured_uvicorn, make_args):
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04 not a pickle")
    result = CliRunner().invoke(app, ["serve", *make_args(tmp_path, tiny_checkpoints)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert not captured_uvicorn
