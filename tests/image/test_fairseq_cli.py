"""End to end on real data: fairseq-train --user-dir, then ``vqnat image`` (evaluate, sample, reconstruct, train)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner
from vqnat_cli.main import app

from vqnat.checkpoint import mark_own_save_dir
from vqnat.data.images import resolve_data_dir
from vqnat.pipeline.fairseq_run import USER_DIR

runner = CliRunner()
TINY_LATENT_BITS = 49 * math.log2(64) / 784  # vqnat_image_vqvae_tiny on 28x28: 7x7 codes of K = 64


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few updates of fairseq-train itself (plugin loaded with --user-dir) on 128 real Fashion-MNIST images."""
    save_dir = tmp_path_factory.mktemp("fm_soft")
    argv = [
        sys.executable, "-m", "fairseq_cli.train", str(resolve_data_dir("fashion-mnist", None)),
        "--user-dir", USER_DIR, "--task", "vqnat_image", "--dataset", "fashion-mnist",
        "--max-train-images", "128", "--max-eval-images", "32",
        "--arch", "vqnat_image_vqvae_tiny", "--bottleneck", "soft", "--criterion", "vqnat_image_bits",
        "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32", "--required-batch-size-multiple", "1",
        "--max-update", "6", "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--cpu",
        "--log-format", "simple", "--log-interval", "2", "--seed", "3",
        "--codebook-decay", "0.95", "--softmax-temperature", "2.0",  # must reach the model (see test below)
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "valid on 'valid' subset" in log and "| bpd " in log and "prior_bpd" in log and "perplexity" in log
    checkpoint = save_dir / "checkpoint_last.pt"
    assert checkpoint.is_file()
    mark_own_save_dir(save_dir)  # written by this test: it loads as a `vqnat image train` folder's would
    return checkpoint


def test_model_options_reach_the_bottleneck(trained_checkpoint: Path) -> None:
    """fairseq flattens all configs into one namespace: a model option that shares a name with a fairseq option
    (as ``ema_decay`` once did with fairseq's --ema-decay) would silently take fairseq's value instead."""
    from vqnat.pipeline.image_inference import load_image_model

    quantizer = load_image_model(trained_checkpoint).net.quantizer
    assert quantizer.codebook.decay == 0.95 and quantizer.temperature == 2.0 and quantizer.mode == "soft"


def test_a_checkpoint_with_the_old_option_names_loads_with_its_values(trained_checkpoint: Path,
                                                                       tmp_path: Path) -> None:
    """A checkpoint saved before the image model took QuantizerConfig's names (soft_temperature, kmeans_init, ...)
    loads with the values it was trained with, and gives the same model."""
    from vqnat.checkpoint import read_checkpoint_as_saved
    from vqnat.modules.image_vqvae import LEGACY_QUANTIZER_NAMES
    from vqnat.pipeline.image_inference import load_image_model

    state = read_checkpoint_as_saved(trained_checkpoint)
    model_cfg = state["cfg"]["model"]
    for old, (new, inverted) in LEGACY_QUANTIZER_NAMES.items():  # write it the way the old code did
        value = model_cfg.pop(new)
        model_cfg[old] = (not value) if inverted else value
    assert {"soft_temperature", "commitment_beta", "num_slices", "kmeans_init", "reseed_dead_codes"} <= set(model_cfg)
    assert model_cfg["soft_temperature"] == 2.0 and model_cfg["kmeans_init"] is False
    legacy = tmp_path / "legacy" / "checkpoint_last.pt"
    legacy.parent.mkdir()
    torch.save(state, legacy)
    mark_own_save_dir(legacy.parent)
    old, new = load_image_model(legacy).net, load_image_model(trained_checkpoint).net
    vq = old.quantizer
    assert (vq.temperature, vq.codebook.decay, vq.mode, vq.num_slices, vq.beta) == (2.0, 0.95, "soft", 1, 0.25)
    assert not vq.codebook.reseed_dead_codes
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(old(images).logits, new(images).logits)


def test_evaluate_image(trained_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["image", "evaluate", "-m", str(trained_checkpoint), "--max-images", "64",
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
    result = runner.invoke(app, ["image", "sample", "-m", str(trained_checkpoint), "--num", "4", "-o", str(samples)])
    assert result.exit_code == 0, result.output
    assert Image.open(samples).size == (62, 62)  # 2 x 2 grid of 28 px with 2 px padding
    recon = tmp_path / "recon.png"
    result = runner.invoke(app, ["image", "reconstruct", "-m", str(trained_checkpoint), "--num", "3",
                                 "--columns", "3", "-o", str(recon)])
    assert result.exit_code == 0, result.output
    assert Image.open(recon).size == (92, 62)  # 3 columns; a row of originals above a row of reconstructions


def test_a_checkpoint_from_elsewhere_loads_only_with_trust(trained_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "downloaded.pt"
    shutil.copyfile(trained_checkpoint, copy)
    result = runner.invoke(app, ["image", "sample", "-m", str(copy), "--num", "1", "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "--trust-checkpoint" in result.output
    assert not (tmp_path / "s.png").exists()
    result = runner.invoke(app, ["image", "sample", "-m", str(copy), "--num", "1", "-o", str(tmp_path / "s.png"),
                                 "--trust-checkpoint"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").is_file()


def test_train_image_cli_on_the_cifar10_format(cifar10_dir: Path, tmp_path: Path) -> None:
    save_dir = tmp_path / "cifar"
    result = runner.invoke(app, ["image", "train", "--dataset", "cifar10", "--data-dir", str(cifar10_dir),
                                 "-s", str(save_dir), "--max-update", "2", "--batch-size", "7",
                                 "--threads", "1", "--bottleneck", "hard", "--max-eval-images", "0",
                                 "--clip-norm", "0.5"])  # not a vqnat option: passed through to fairseq-train
    assert result.exit_code == 0, result.output
    stats = json.loads((save_dir / "train_stats.json").read_text())
    assert set(stats) == {"wall_s", "cpu_s", "argv"} and stats["wall_s"] > 0 and stats["cpu_s"] > 0
    assert "vqnat_image_vqvae_tiny" in stats["argv"] and stats["argv"][-2:] == ["--clip-norm", "0.5"]
    assert "--cpu" in stats["argv"] and "--user-dir" in stats["argv"]
    log = (save_dir / "train.log").read_text()  # the translation trainer's runner: the whole output in train.log
    assert "fairseq_main train" in log and "done training" in log
    assert "fairseq_main train" not in result.output and "done training" in result.output
    result = runner.invoke(app, ["image", "evaluate", "-m", str(save_dir / "checkpoint_last.pt")])
    assert result.exit_code == 0, result.output
    assert "cifar10 test (5 images), hard EM" in result.output


@pytest.mark.parametrize("args, message", [
    (["image", "train", "--dataset", "cifar10", "-s", "x"], "cifar-10-batches-py"),
    (["image", "train", "--dataset", "fashion-mnist", "--data-dir", "/no/such/dir", "-s", "x"], "does not exist"),
    (["image", "evaluate", "-m", "/no/such.pt"], "does not exist"),
    pytest.param(["image", "train", "--dataset", "mnist", "--device", "cuda", "-s", "x"], "--device cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
    (["image", "train", "--dataset", "mnist", "--device", "tpu", "-s", "x"], "cpu or cuda"),
    (["image", "sample", "-m", "/no/such.pt"], "does not exist"),
    (["image", "reconstruct", "-m", "/no/such.pt"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert "Traceback" not in result.output
