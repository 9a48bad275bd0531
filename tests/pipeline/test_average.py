"""Checkpoint averaging (vqnat.pipeline.average and `vqnat average`) on the tiny real NAT checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner
from vqnat_cli.main import app

from vqnat.checkpoint import UntrustedCheckpointError, mark_own_save_dir, read_checkpoint_as_saved
from vqnat.pipeline.average import average_checkpoints, last_checkpoints, numbered_checkpoints


def load(path: Path) -> dict:
    return read_checkpoint_as_saved(path, trust=True)  # files this test wrote


def shifted_copy(source: Path, out: Path, shift: float, updates: int) -> Path:
    """A copy of ``source`` whose floating weights are moved by ``shift`` and which claims ``updates`` updates."""
    state = load(source)
    state["model"] = {k: v + shift if v.is_floating_point() else v for k, v in state["model"].items()}
    state["optimizer_history"][-1]["num_updates"] = updates
    torch.save(state, out)
    return out


@pytest.fixture
def run_dir(tiny_checkpoints, tmp_path) -> Path:
    """A save dir with three interval checkpoints, each 1.0 above the one before, plus best/last copies."""
    folder = tmp_path / "run"
    folder.mkdir()
    mark_own_save_dir(folder)  # as `vqnat train` marks its save folder
    for i, updates in enumerate((2, 4, 10)):
        shifted_copy(tiny_checkpoints.nat, folder / f"checkpoint_{i + 1}_{updates}.pt", float(i), updates)
    shutil.copy(folder / "checkpoint_3_10.pt", folder / "checkpoint_last.pt")
    shutil.copy(folder / "checkpoint_1_2.pt", folder / "checkpoint_best.pt")
    return folder


def test_the_average_is_the_mean_of_the_weights(tiny_checkpoints, run_dir, tmp_path):
    paths = last_checkpoints(run_dir, 2)
    assert [p.name for p in paths] == ["checkpoint_2_4.pt", "checkpoint_3_10.pt"]  # by updates, not by name
    report = average_checkpoints(paths, tmp_path / "avg.pt")
    original, averaged = load(tiny_checkpoints.nat), load(tmp_path / "avg.pt")
    assert report["updates"] == 10 and report["averaged_tensors"] > 0
    assert averaged["last_optimizer_state"] is None
    for key, value in original["model"].items():
        if value.is_floating_point():  # (value + 1 + value + 2) / 2
            torch.testing.assert_close(averaged["model"][key], value + 1.5)
        else:  # counters and flags: the newest checkpoint's
            assert torch.equal(averaged["model"][key], value), key


def test_an_averaged_nat_translates(tiny_checkpoints, tmp_path):
    from vqnat.inference import Translator

    same = [shifted_copy(tiny_checkpoints.nat, tmp_path / f"c{i}.pt", 0.0, 6) for i in range(3)]
    average_checkpoints(same, tmp_path / "avg.pt", trust=True)
    sources = (tiny_checkpoints.data_bin.parent / "test.en").read_text().splitlines()
    reference = Translator.load(tiny_checkpoints.nat, data_dir=tiny_checkpoints.data_bin).translate(sources)
    averaged = Translator.load(tmp_path / "avg.pt", data_dir=tiny_checkpoints.data_bin,
                               trust_checkpoint=True).translate(sources)  # written by this test
    assert averaged == reference  # the mean of three equal checkpoints is that checkpoint


def test_numbered_checkpoints_fall_back_to_epoch_checkpoints(tiny_checkpoints, tmp_path):
    for epoch in (10, 2, 9):
        shutil.copy(tiny_checkpoints.nat, tmp_path / f"checkpoint{epoch}.pt")
    shutil.copy(tiny_checkpoints.nat, tmp_path / "checkpoint_last.pt")
    assert [p.name for p in numbered_checkpoints(tmp_path)] == ["checkpoint2.pt", "checkpoint9.pt", "checkpoint10.pt"]


def test_mismatched_checkpoints_are_refused(tiny_checkpoints, tmp_path):
    state = load(tiny_checkpoints.nat)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="same tensors"):
        average_checkpoints([tiny_checkpoints.nat, tmp_path / "other.pt"], tmp_path / "avg.pt", trust=True)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        average_checkpoints([tmp_path / "missing.pt"], tmp_path / "avg.pt")


def test_checkpoints_from_outside_a_training_folder_need_trust(run_dir, tmp_path):
    loose = [shutil.copy(run_dir / name, tmp_path / name) for name in ("checkpoint_1_2.pt", "checkpoint_2_4.pt")]
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        average_checkpoints(loose, tmp_path / "avg.pt")
    result = CliRunner().invoke(app, ["average", *map(str, loose), "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 1 and "--trust-checkpoint" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a.pt").exists()
    result = CliRunner().invoke(app, ["average", *map(str, loose), "--out", str(tmp_path / "a.pt"),
                                      "--trust-checkpoint"])
    assert result.exit_code == 0, result.output


def test_cli_average(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["average", "--save-dir", str(run_dir), "--last", "3", "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 0, result.output
    assert "averaged 3 checkpoints" in result.output and (tmp_path / "a.pt").is_file()
    files = [str(run_dir / "checkpoint_1_2.pt"), str(run_dir / "checkpoint_2_4.pt")]
    result = runner.invoke(app, ["average", *files, "--out", str(tmp_path / "b.pt")])
    assert result.exit_code == 0, result.output
    for bad, message in [
        (["--out", str(tmp_path / "c.pt")], "either checkpoint files or --save-dir"),
        (["--save-dir", str(run_dir), "--last", "4", "--out", str(tmp_path / "c.pt")], "fewer than the 4"),
        (["--save-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "c.pt")], "no such folder"),
        (["--save-dir", str(run_dir), "--last", "0", "--out", str(tmp_path / "c.pt")], "at least 1"),
    ]:
        result = runner.invoke(app, ["average", *bad])
        assert result.exit_code == 1 and message in result.output, (bad, result.output)
        assert "Traceback" not in result.output
