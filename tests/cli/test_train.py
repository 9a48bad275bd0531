"""``vqnat train`` through the real CLI: the trainer never outlives ``vqnat``, one run per save folder, a corrupt
last checkpoint is recovered, bad options are refused up front, and the terminal shows progress, not fairseq's
configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app

from vqnat.pipeline.presets import KEEP_INTERVAL_UPDATES

runner = CliRunner()
VQNAT = Path(sys.executable).parent / "vqnat"  # the installed command
TINY = ["--arch", "vqnat_lt_tiny", "--num-samples", "2", "--max-tokens", "512", "--warmup", "10"]


def train_nat(data: Path, save_dir: Path, *args: str):
    return runner.invoke(app, ["train", "nat", "--data", str(data), "--save-dir", str(save_dir), *TINY, *args])


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def running_trainer(tiny_bible_bin, tmp_path):
    """``vqnat train nat`` in a subprocess, long enough to be stopped: (process, its trainer's pid, save dir)."""
    save = tmp_path / "run"
    proc = subprocess.Popen([str(VQNAT), "train", "nat", "--data", str(tiny_bible_bin.root),
                             "--save-dir", str(save), *TINY, "--max-update", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (save / "train.log").is_file() and children(proc.pid) or proc.poll() is not None, 120,
                 "the trainer to start")
        assert proc.poll() is None, proc.communicate()
        (trainer,) = children(proc.pid)
        yield proc, trainer, save
    finally:
        for pid in [proc.pid, *children(proc.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.communicate()


def test_kill_9_of_vqnat_ends_the_trainer(running_trainer, tiny_bible_bin):
    proc, trainer, save = running_trainer
    second = train_nat(tiny_bible_bin.root, save, "--max-update", "1")  # the lock refuses a second run
    assert second.exit_code == 1 and "another training run" in second.output, second.output
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not alive(trainer), 60, "the trainer to end after its parent")


def test_sigterm_is_forwarded_and_says_how_to_resume(running_trainer):
    proc, trainer, _ = running_trainer
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert not alive(trainer)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "resumes from" in errors[0] and "Traceback" not in err, err


def test_corrupt_last_checkpoint_resumes_from_an_intact_one(tiny_bible_bin, tmp_path):
    """Also: interval checkpoints are capped, and the terminal gets progress but not fairseq's configuration."""
    save = tmp_path / "run"
    first = train_nat(tiny_bible_bin.root, save, "--max-update", "7", "--save-interval-updates", "1",
                      "--disable-validation")
    assert first.exit_code == 0, first.output
    assert len(list(save.glob("checkpoint_*_*.pt"))) == KEEP_INTERVAL_UPDATES
    assert "'_name'" not in first.output and "'_name'" in (save / "train.log").read_text()
    assert "| train |" in first.output and len(first.output.splitlines()) < 40, first.output
    last = save / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # what a kill during a copy used to leave
    resumed = train_nat(tiny_bible_bin.root, save, "--max-update", "8", "--disable-validation")
    assert resumed.exit_code == 0, resumed.output
    notices = [line for line in resumed.output.splitlines() if "was corrupt" in line]
    assert len(notices) == 1 and "resuming from checkpoint_" in notices[0], resumed.output
    assert (save / "checkpoint_last.pt.corrupt").is_file()
    assert "Traceback" not in resumed.output


@pytest.mark.parametrize("args", [["--max-update", "-5"], ["--num-samples", "0"], ["--codebook-size", "-3"],
                                  ["--max-tokens", "0"], ["--max-epoch", "-1"]])
def test_bad_numbers_are_refused_before_training(tmp_path, args):
    result = train_nat(tmp_path / "no-data", tmp_path / "run", *args)
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_unknown_option_shows_fairseqs_error_line_only(tiny_bible_bin, tmp_path):
    result = train_nat(tiny_bible_bin.root, tmp_path / "run", "--max-update", "1", "--bogus-option", "3")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "unrecognized arguments: --bogus-option 3" in errors[0], result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) < 5, result.output


def test_trainer_copies_checkpoints_atomically(tmp_path, monkeypatch):
    """fairseq-train with vqnat's --user-dir gets the atomic copy, and a copy that dies half-way leaves the old
    checkpoint_best.pt whole."""
    from vqnat.pipeline import safe_checkpoints
    from vqnat.pipeline.fairseq_run import USER_DIR

    code = ("import argparse, fairseq.checkpoint_utils as c, fairseq.utils as u\n"
            f"u.import_user_module(argparse.Namespace(user_dir={USER_DIR!r}))\n"
            "print(c.PathManager.atomic_copies)\n")
    # the teacher's trainer has no --user-dir: fairseq_main imports vqnat before fairseq_cli.train
    teacher = ("import vqnat.pipeline.fairseq_main, fairseq.checkpoint_utils as c\n"
               "print(c.PathManager.atomic_copies)\n")
    for trainer in (code, teacher):
        result = subprocess.run([sys.executable, "-c", trainer], capture_output=True, text=True, check=False)
        assert result.stdout.strip().endswith("True"), result.stdout + result.stderr

    from fairseq import checkpoint_utils

    import vqnat  # noqa: F401

    new, best = tmp_path / "checkpoint_1_10.pt", tmp_path / "checkpoint_best.pt"
    new.write_bytes(b"new" * 1000)
    best.write_bytes(b"old checkpoint")

    def dies_half_way(src, dst):
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise KeyboardInterrupt  # the kill

    monkeypatch.setattr(safe_checkpoints.shutil, "copyfile", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_utils.PathManager.copy(str(new), str(best), overwrite=True)
    assert best.read_bytes() == b"old checkpoint"
    monkeypatch.undo()
    assert checkpoint_utils.PathManager.copy(str(new), str(best), overwrite=True)
    assert best.read_bytes() == new.read_bytes()


def test_training_option_defaults_are_the_librarys():
    """The train commands repeat no default: each option's default is the one the library declares."""
    import inspect

    import typer

    from vqnat.pipeline.presets import TrainBudget, nat_train_args, teacher_train_args
    from vqnat.quantization.config import QuantizerConfig

    train = typer.main.get_command(app).commands["train"]
    budget = TrainBudget()
    expected_budget = {"max_epoch": budget.max_epoch, "max_update": budget.max_update,
                       "max_tokens": budget.max_tokens, "lr": budget.lr, "warmup": budget.warmup_updates,
                       "seed": budget.seed}
    for name, builder, own in (
        ("teacher", teacher_train_args, {"size": "size"}),
        ("nat", nat_train_args, {"arch": "arch", "bottleneck": "bottleneck", "length_rule": "length_rule"}),
    ):
        defaults = {p.name: p.default for p in train.commands[name].params}
        for option, value in expected_budget.items():
            assert defaults[option] == value, (name, option)
        signature = inspect.signature(builder).parameters
        for option, argument in own.items():
            assert defaults[option] == signature[argument].default, (name, option)
    nat_defaults = {p.name: p.default for p in train.commands["nat"].params}
    assert nat_defaults["num_samples"] == QuantizerConfig.num_samples
    assert nat_defaults["bottleneck"] == QuantizerConfig.bottleneck
