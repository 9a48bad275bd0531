"""``vqnat.pipeline.image_training``: fairseq-train's arguments, and the timed run through a given runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vqnat.pipeline.fairseq_run import USER_DIR, FairseqError
from vqnat.pipeline.image_training import ImageTrainOptions, image_train_argv, run_image_training


def test_argv_uses_every_image_and_the_package_as_user_dir(cifar10_dir: Path) -> None:
    argv = image_train_argv(ImageTrainOptions(dataset="cifar10", save_dir="out", data_dir=str(cifar10_dir),
                                              batch_size=7, cpu=False, extra=("--clip-norm", "0.5")))
    assert argv[0] == str(cifar10_dir) and argv[argv.index("--user-dir") + 1] == USER_DIR
    assert argv[argv.index("--required-batch-size-multiple") + 1] == "1"
    assert argv[argv.index("--batch-size") + 1] == "7" and "--cpu" not in argv and argv[-2:] == ["--clip-norm", "0.5"]


def test_argv_names_the_bottleneck_options_as_the_translation_model_does() -> None:
    argv = image_train_argv(ImageTrainOptions(dataset="fashion-mnist", save_dir="out", bottleneck="soft",
                                              num_samples=5, softmax_temperature=2.0, codebook_size=32,
                                              extra=("--kmeans-init", "--codebook-slices", "2")))
    pairs = dict(zip(argv, argv[1:], strict=False))
    assert pairs["--bottleneck"] == "soft" and pairs["--num-samples"] == "5" and pairs["--codebook-size"] == "32"
    assert pairs["--softmax-temperature"] == "2.0" and argv[-3:] == ["--kmeans-init", "--codebook-slices", "2"]


@pytest.mark.parametrize("field, value, message", [("dataset", "svhn", "unknown dataset"),
                                                   ("arch", "huge", "unknown arch"),
                                                   ("bottleneck", "gumbel", "'hard' or 'soft'")])
def test_argv_refuses_unknown_choices(field: str, value: str, message: str) -> None:
    options = {"dataset": "fashion-mnist", "save_dir": "out", field: value}
    with pytest.raises(ValueError, match=message):
        image_train_argv(ImageTrainOptions(**options))


def test_run_records_the_trainers_cost_and_threads(tmp_path: Path) -> None:
    """The runner's child sees the thread count; its CPU seconds are counted; the environment is restored."""
    before = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    seen: dict[str, str] = {}

    def runner(argv: list[str]) -> None:
        code = "import os, time; t = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n" \
               "print(os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])"
        seen["threads"] = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout.split()
        seen["argv"] = argv

    stats = run_image_training(["data", "--max-update", 3], tmp_path / "run", runner, threads=3)
    assert seen == {"threads": ["3", "3"], "argv": ["data", "--max-update", "3"]}
    assert stats.cpu_s >= 0.25 and stats.wall_s >= stats.cpu_s - 0.05
    assert json.loads((tmp_path / "run" / "train_stats.json").read_text()) == {
        "wall_s": stats.wall_s, "cpu_s": stats.cpu_s, "argv": ["fairseq-train", "data", "--max-update", "3"]}
    assert {name: os.environ.get(name) for name in before} == before


def test_a_failed_run_writes_no_stats_and_restores_the_environment(tmp_path: Path) -> None:
    before = os.environ.get("OMP_NUM_THREADS")

    def failing(argv: list[str]) -> None:
        raise FairseqError("fairseq-train failed (exit 1): ValueError: boom")

    with pytest.raises(FairseqError, match="boom"):
        run_image_training(["data"], tmp_path, failing, threads=1)
    assert not (tmp_path / "train_stats.json").exists() and os.environ.get("OMP_NUM_THREADS") == before
