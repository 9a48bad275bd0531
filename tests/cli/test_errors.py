"""One ``Error:`` line, no traceback, for the wrong or broken files a user can pass (through the real CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app

runner = CliRunner()


def one_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(params=["garbage", "truncated", "text"])
def broken_checkpoint(request, tiny_models, tmp_path) -> Path:
    path = tmp_path / "broken.pt"
    if request.param == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif request.param == "truncated":  # what a kill during a save used to leave
        path.write_bytes(Path(tiny_models.nat).read_bytes()[:3000])
    else:
        path.write_text("# notes\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("command", [
    lambda ck, tmp: ["average", str(ck), str(ck), "-o", str(tmp / "avg.pt"), "--trust-checkpoint"],
    lambda ck, tmp: ["image", "sample", "-m", str(ck), "-o", str(tmp / "s.png"), "--trust-checkpoint"],
    lambda ck, tmp: ["image", "evaluate", "-m", str(ck), "--trust-checkpoint"],
])
def test_broken_checkpoint_is_one_line(broken_checkpoint, tmp_path, command):
    one_error(runner.invoke(app, command(broken_checkpoint, tmp_path)), str(broken_checkpoint), "not a")


def test_a_translation_model_given_to_sample(tiny_models, tmp_path):
    one_error(runner.invoke(app, ["image", "sample", "-m", str(tiny_models.nat), "-o", str(tmp_path / "s.png")]),
              "not an image VQ-VAE")


def test_a_folder_as_model_says_folder(tmp_path):
    one_error(runner.invoke(app, ["translate", "--model", str(tmp_path)], input="a\n"), "folder")


def test_distill_with_a_nat_as_teacher(tiny_models, tiny_bible_bin, tmp_path):
    result = runner.invoke(app, ["distill", "--teacher", str(tiny_models.nat), "--data", str(tiny_bible_bin.root),
                                 "--out", str(tmp_path / "d")])
    one_error(result, "not an autoregressive teacher")


def test_distill_with_other_dictionaries(tiny_models, tiny_bible_bin, tmp_path):
    result = runner.invoke(app, ["distill", "--teacher", str(tiny_models.teacher), "--data",
                                 str(tiny_bible_bin.root), "--out", str(tmp_path / "d")])
    one_error(result, "vocabulary", "dictionaries")


def test_bench_refuses_swapped_models(tiny_models, tmp_path):
    result = runner.invoke(app, ["bench", "--nat", str(tiny_models.teacher), "--teacher", str(tiny_models.nat),
                                 "--limit", "2", "--out", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    one_error(result, "swapped")
    assert not (tmp_path / "b.json").exists()


def test_help_starts_without_torch_and_reads_plainly():
    """`vqnat --help` imports neither torch nor fairseq; flags show no type, file options say FILE."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('heavy:', sorted({'torch', 'fairseq'} & set(sys.modules))))\n"
            "from vqnat_cli.main import main\n"
            "sys.argv = ['vqnat', 'translate', '--help']\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("heavy: []"), result.stdout
    assert "<bool>" not in result.stdout and "-i, --input FILE" in result.stdout and "--threads" in result.stdout
    assert "--progress / --no-progress" in result.stdout


def test_teacher_help_cites_nothing_outside_the_repo():
    result = runner.invoke(app, ["train", "teacher", "--help"])
    assert result.exit_code == 0 and "BASELINES" not in result.output


def test_evaluate_takes_threads():
    result = runner.invoke(app, ["evaluate", "translation", "--help"])
    assert result.exit_code == 0 and "--threads" in result.output


@pytest.mark.parametrize("args", [["translate", "--bogus"], ["average"]])
def test_every_error_begins_the_same(args):
    result = runner.invoke(app, args)
    assert result.exit_code in (1, 2)
    assert [line for line in result.output.splitlines() if line.startswith("Error: ")], result.output
    assert "error:" not in result.output


def test_examples_are_printed_as_written():
    """Re-wrapping used to break `--save-dir work/nat-soft` into `work/nat-` and `soft`."""
    result = runner.invoke(app, ["train", "nat", "--help"], terminal_width=80)
    assert "--save-dir work/nat-soft --bottleneck soft" in result.output, result.output
