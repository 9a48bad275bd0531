"""``vqnat translate`` through the real CLI: one output line per input line, output written as it is done,
resumable after an interruption, and one-line errors for bad input and options."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app

from vqnat.inference import Translator

runner = CliRunner()
SENTENCES = ["In the beginning God created the heaven and the earth.", "And God said, Let there be light.",
             "And the evening and the morning were the first day.", "And God called the light Day."]


def translate(model, *args: str, input: bytes | str = b""):
    return runner.invoke(app, ["translate", "--model", str(model), *args], input=input)


def error_lines(result) -> list[str]:
    assert "Traceback" not in result.output, result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def test_one_output_line_per_input_line(tiny_models):
    """Form feed, vertical tab, a lone CR, U+0085 and U+2028 stay inside their line; CRLF ends one; a blank
    line stays blank at its place."""
    lines = ["In the\x0bbeginning", "God\x0ccreated", "the heaven\rand", "the\x85earth", "", "And\u2028God said"]
    data = ("\n".join(lines[:2]) + "\r\n" + "\n".join(lines[2:]) + "\n").encode("utf-8")
    result = translate(tiny_models.nat, input=data)
    assert result.exit_code == 0, result.output
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines), result.stdout
    assert out[4] == "" and all(out[i] for i in (0, 1, 2, 3, 5))


def test_empty_input_gives_empty_output(tiny_models):
    result = translate(tiny_models.nat, input=b"")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_output_file_matches_stdout_and_last_line_without_newline(tiny_models, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(SENTENCES), encoding="utf-8")  # no newline at the end
    out = tmp_path / "out.txt"
    result = translate(tiny_models.nat, "-i", str(source), "-o", str(out), "--batch-size", "1")
    assert result.exit_code == 0, result.output
    stdout = translate(tiny_models.nat, "-i", str(source)).stdout
    assert out.read_text(encoding="utf-8") == stdout and stdout.count("\n") == len(SENTENCES)
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize(("where", "message"), [
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: tmp / "missing" / "out.txt", "does not exist"),
])
def test_bad_output_is_refused_before_any_work(tmp_path, where, message):
    """Checked before the model loads: the (missing) model is never reached."""
    result = translate(tmp_path / "no-model.pt", "-o", str(where(tmp_path)), input=b"a\n")
    assert result.exit_code == 1
    errors = error_lines(result)
    assert len(errors) == 1 and message in errors[0], result.output


@pytest.mark.parametrize("use_file", [False, True])
def test_invalid_utf8_names_the_line(tiny_models, tmp_path, use_file):
    data = b"good line\nbad \xff line\n"
    args = []
    if use_file:
        (tmp_path / "in.txt").write_bytes(data)
        args = ["-i", str(tmp_path / "in.txt")]
    result = translate(tiny_models.nat, *args, input=b"" if use_file else data)
    assert result.exit_code == 1
    errors = error_lines(result)
    assert len(errors) == 1 and "line 2: not valid UTF-8" in errors[0], result.output
    assert ("in.txt" if use_file else "stdin") in errors[0]


def test_interrupted_run_keeps_its_lines_and_resumes(tiny_models, tmp_path, monkeypatch):
    """Ctrl-C after the first chunk: its lines are on disk; the rerun continues and gives what one run gives."""
    source = tmp_path / "in.txt"
    source.write_text("".join(s + "\n" for s in SENTENCES * 5), encoding="utf-8")  # 20 lines
    out, expected = tmp_path / "out.txt", tmp_path / "expected.txt"
    args = ["-i", str(source), "--batch-size", "1"]  # chunks of CHUNK_BATCHES (8) lines
    assert translate(tiny_models.nat, *args, "-o", str(expected)).exit_code == 0
    real = Translator.translate
    calls = []

    def interrupt_second_chunk(self, texts, **kwargs):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, texts, **kwargs)

    monkeypatch.setattr(Translator, "translate", interrupt_second_chunk)
    result = translate(tiny_models.nat, *args, "-o", str(out))
    assert result.exit_code == 130 and "rerun the same command" in error_lines(result)[0], result.output
    partial = tmp_path / "out.txt.partial"
    assert not out.exists() and partial.read_text(encoding="utf-8").count("\n") == calls[0] == 8
    monkeypatch.setattr(Translator, "translate", real)
    calls.clear()
    result = translate(tiny_models.nat, *args, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "resuming: 8 lines" in result.output
    assert out.read_text(encoding="utf-8") == expected.read_text(encoding="utf-8")
    assert not partial.exists()


def test_partial_output_of_another_input_starts_over(tiny_models, tmp_path):
    (tmp_path / "out.txt.partial").write_text("stale\nhalf a li", encoding="utf-8")
    source = tmp_path / "in.txt"
    source.write_text(SENTENCES[0] + "\n", encoding="utf-8")
    result = translate(tiny_models.nat, "-i", str(source), "-o", str(tmp_path / "out.txt"))
    assert result.exit_code == 0, result.output
    assert "starting over" in result.output
    assert "stale" not in (tmp_path / "out.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(("args", "message"), [
    (["--length-offset", "100000"], "max_target_positions"),
    (["--beam", "4"], "--latent-beam"),
])
def test_options_a_nat_cannot_use_are_refused(tiny_models, args, message):
    result = translate(tiny_models.nat, *args, input=b"In the beginning\n")
    assert result.exit_code == 1
    errors = error_lines(result)
    assert len(errors) == 1 and message in errors[0], result.output


def test_negative_length_offset_is_a_usage_error(tiny_models):
    result = translate(tiny_models.nat, "--length-offset", "-1", input=b"x\n")
    assert result.exit_code == 2 and "Invalid value for '--length-offset'" in result.output, result.output


def test_progress_bar_on_request_and_threads(tiny_models):
    shown = translate(tiny_models.nat, "--progress", "--threads", "1", input=SENTENCES[0] + "\n")
    assert shown.exit_code == 0, shown.output
    assert "translating" in shown.stderr and "1/1" in shown.stderr
    hidden = translate(tiny_models.nat, input=SENTENCES[0] + "\n")  # stderr is no terminal here
    assert "translating" not in hidden.stderr


def test_kill_9_keeps_finished_lines_and_the_rerun_completes(tiny_models, tmp_path):
    """A translation killed outright keeps every chunk it finished; the same command (another batch size does
    not change the translations) then completes the file."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    source, out = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("".join(s + "\n" for s in SENTENCES * 100), encoding="utf-8")  # 400 lines
    partial = tmp_path / "out.txt.partial"
    command = [str(Path(sys.executable).parent / "vqnat"), "translate", "--model", str(tiny_models.nat),
               "-i", str(source), "-o", str(out), "--batch-size", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (partial.is_file() and partial.read_bytes().count(b"\n") >= 8) and proc.poll() is None:
        assert time.monotonic() < deadline, "no chunk written"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    kept = partial.read_bytes().count(b"\n")
    assert 8 <= kept < 400 and not out.exists()
    rerun = subprocess.run(command[:-1] + ["64"], capture_output=True, text=True, check=False)  # batch size 64
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {kept} lines" in rerun.stderr
    assert out.read_text(encoding="utf-8").count("\n") == 400 and not partial.exists()
