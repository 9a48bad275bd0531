"""End to end on real data: fairseq-train --user-dir, then the CLI (evaluate, sample, reconstruct, train)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner
from vqnat_cli.main import app

from vqnat.data.images import resolve_data_dir
from vqnat.image_training import PLUGIN_DIR

runner = CliRunner()
TINY_LATENT_BITS = 49 * math.log2(64) / 784  # vqnat_image_vqvae_tiny on 28x28: 7x7 codes of K = 64


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few updates of fairseq-train itself (plugin loaded with --user-dir) on 128 real Fashion-MNIST images."""
    save_dir = tmp_path_factory.mktemp("fm_soft")
    argv = [
        sys.executable, "-m", "fairseq_cli.train", str(resolve_data_dir("fashion-mnist", None)),
        "--user-dir", PLUGIN_DIR, "--task", "vqnat_image", "--dataset", "fashion-mnist",
        "--max-train-images", "128", "--max-eval-images", "32",
        "--arch", "vqnat_image_vqvae_tiny", "--bottleneck", "soft", "--criterion", "vqnat_image_bits",
        "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32", "--required-batch-size-multiple", "1",
        "--max-update", "6", "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--cpu",
        "--log-format", "simple", "--log-interval", "2", "--seed", "3",
        "--codebook-decay", "0.95", "--soft-temperature", "2.0",  # must reach the model (see test below)
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "valid on 'valid' subset" in log and "| bpd " in log and "prior_bpd" in log and "perplexity" in log
    checkpoint = save_dir / "checkpoint_last.pt"
    assert checkpoint.is_file()
    return checkpoint


def test_model_options_reach_the_bottleneck(trained_checkpoint: Path) -> None:
    """fairseq flattens all configs into one namespace: a model option that shares a name with a fairseq option
    (as ``ema_decay`` once did with fairseq's --ema-decay) would silently take fairseq's value instead."""
    from vqnat.image_inference import load_image_model

    quantizer = load_image_model(trained_checkpoint).net.quantizer
    assert quantizer.codebook.decay == 0.95 and quantizer.temperature == 2.0 and quantizer.mode == "soft"


def test_evaluate_image(trained_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "image", "-c", str(trained_checkpoint), "--max-images", "64",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "bits/dim (uniform prior)" in result.output
    figures = json.loads(out.read_text())
    assert figures["dataset"] == "fashion-mnist" and figures["bottleneck"] == "soft" and figures["num_images"] == 64
    assert 1.0 < figures["recon_bpd"] < 8.5
    assert figures["bpd"] == pytest.approx(figures["recon_bpd"] + TINY_LATENT_BITS, abs=1e-9)
    assert 1.0 <= figures["perplexity"] <= 64 and 0.0 <= figures["dead_fraction"] <= 1.0


def test_sample_and_reconstruct_write_pngs(trained_checkpoint: Path, tmp_path: Path) -> None:
    samples = tmp_path / "samples.png"
    result = runner.invoke(app, ["sample", "-c", str(trained_checkpoint), "--num", "4", "-o", str(samples)])
    assert result.exit_code == 0, result.output
    assert Image.open(samples).size == (62, 62)  # 2 x 2 grid of 28 px with 2 px padding
    recon = tmp_path / "recon.png"
    result = runner.invoke(app, ["reconstruct", "-c", str(trained_checkpoint), "--num", "3", "--columns", "3",
                                 "-o", str(recon)])
    assert result.exit_code == 0, result.output
    assert Image.open(recon).size == (92, 62)  # 3 columns; a row of originals above a row of reconstructions


def test_train_image_cli_on_the_cifar10_format(cifar10_dir: Path, tmp_path: Path) -> None:
    save_dir = tmp_path / "cifar"
    result = runner.invoke(app, ["train", "image", "--dataset", "cifar10", "--data-dir", str(cifar10_dir),
                                 "-o", str(save_dir), "--max-update", "2", "--batch-size", "7",
                                 "--threads", "1", "--bottleneck", "hard", "--max-eval-images", "0",
                                 "--clip-norm", "0.5"])  # not a vqnat option: passed through to fairseq-train
    assert result.exit_code == 0, result.output
    stats = json.loads((save_dir / "train_stats.json").read_text())
    assert stats["returncode"] == 0 and stats["wall_s"] > 0 and "vqnat_image_vqvae_tiny" in stats["argv"]
    assert stats["argv"][-2:] == ["--clip-norm", "0.5"]
    result = runner.invoke(app, ["evaluate", "image", "-c", str(save_dir / "checkpoint_last.pt")])
    assert result.exit_code == 0, result.output
    assert "cifar10 test (5 images), hard EM" in result.output


@pytest.mark.parametrize("args, message", [
    (["train", "image", "--dataset", "cifar10", "-o", "x"], "cifar-10-batches-py"),
    (["train", "image", "--dataset", "fashion-mnist", "--data-dir", "/no/such/dir", "-o", "x"], "does not exist"),
    (["evaluate", "image", "-c", "/no/such.pt"], "does not exist"),
    pytest.param(["train", "image", "--dataset", "mnist", "--gpu", "-o", "x"], "CUDA",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
    (["sample", "-c", "/no/such.pt"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1
    assert "Traceback" not in result.output
