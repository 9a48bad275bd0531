"""``vqnat image``: its commands, their help, the old top-level image commands gone, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app

runner = CliRunner()
IMAGE_COMMANDS = ("train", "evaluate", "sample", "reconstruct")
VQNAT = Path(sys.executable).with_name("vqnat")  # the console script of this environment's install


def test_image_group_lists_its_commands() -> None:
    result = runner.invoke(app, ["image", "--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:")[1].split()
    assert [word for word in listed if word in IMAGE_COMMANDS] == list(IMAGE_COMMANDS)


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_each_command_has_an_example_in_the_translation_dialect(command: str) -> None:
    result = runner.invoke(app, ["image", command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"Example: vqnat image {command} " in result.output
    assert "--device" in result.output and "--gpu" not in result.output and "--checkpoint" not in result.output
    if command == "train":
        assert "-s, --save-dir" in result.output
    else:
        assert "-m, --model" in result.output


@pytest.mark.parametrize("old", [["sample", "--help"], ["reconstruct", "--help"], ["train", "image", "--help"],
                                 ["evaluate", "image", "--help"]])
def test_the_old_image_commands_are_gone(old: list[str]) -> None:
    result = runner.invoke(app, old)
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_top_level_help_names_the_image_group_only() -> None:
    result = runner.invoke(app, ["--help"])
    commands = result.output.split("Commands:")[1].split("\n")
    names = [line.split()[0] for line in commands if line.startswith("  ") and line.split()]
    assert "image" in names and "sample" not in names and "reconstruct" not in names


@pytest.mark.parametrize("command", ["evaluate", "sample", "reconstruct"])
@pytest.mark.parametrize("bad, message", [("missing", "does not exist"), ("folder", "is a folder"),
                                          ("text", "not a readable checkpoint"), ("untrusted", "--trust-checkpoint")])
def test_a_bad_image_model_path_is_one_error_line(command: str, bad: str, message: str, tmp_path: Path) -> None:
    """Through the installed entry point (a real process): exit 1, one ``Error:`` line on stderr, no traceback."""
    model = {"missing": tmp_path / "no_such.pt", "folder": tmp_path}.get(bad, tmp_path / "notes.pt")
    if bad in ("text", "untrusted"):
        model.write_text("# not a checkpoint\n", encoding="utf-8")
    args = ["image", command, "-m", str(model)] + ([] if command == "evaluate" else ["-o", str(tmp_path / "o.png")])
    if bad == "text":
        args.append("--trust-checkpoint")  # past the pickle check: the file itself is refused
    done = subprocess.run([str(VQNAT), *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(model) in lines[0], done.stderr
    assert message in lines[0], lines[0]
