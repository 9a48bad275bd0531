"""Train the image VQ-VAE through ``fairseq-train`` (run as a subprocess) and record what the run cost.

:func:`image_train_argv` turns the options of ``vqnat train image`` into fairseq-train's argv (the one place that
maps them); :func:`run_fairseq_train` runs it with this package's folder as ``--user-dir`` and writes
``<save_dir>/train_stats.json`` (wall and CPU seconds, the exact command, the exit code).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vqnat.data.images import DATASETS, load_image_dataset, resolve_data_dir
from vqnat.pipeline.fairseq_run import forwarding_signals, start_child

logger = logging.getLogger(__name__)

ARCHS = ("tiny", "base")
PLUGIN_DIR = str(Path(__file__).resolve().parent)  # --user-dir: this package's own folder


@dataclass(frozen=True)
class ImageTrainOptions:
    """What ``vqnat train image`` asks for; anything else goes to fairseq-train through ``extra``."""

    dataset: str
    save_dir: str
    data_dir: str | None = None
    bottleneck: str = "hard"
    arch: str = "tiny"
    max_update: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 1
    max_train_images: int = 0
    max_eval_images: int = 2000
    codebook_size: int | None = None
    latent_dim: int | None = None
    num_samples: int | None = None
    soft_temperature: float | None = None
    kmeans_init: bool = False
    log_interval: int = 50
    cpu: bool = True
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainStats:
    wall_s: float
    cpu_s: float
    returncode: int
    argv: list[str]


def image_train_argv(opts: ImageTrainOptions) -> list[str]:
    """fairseq-train's arguments (without the program name) for ``opts``.

    Raises:
        ValueError: unknown dataset/arch/bottleneck, or a dataset folder that is missing or malformed.
    """
    if opts.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {opts.dataset!r}: choose one of {', '.join(DATASETS)}")
    if opts.arch not in ARCHS:
        raise ValueError(f"unknown arch {opts.arch!r}: choose one of {', '.join(ARCHS)}")
    if opts.bottleneck not in ("hard", "soft"):
        raise ValueError(f"bottleneck must be 'hard' or 'soft', got {opts.bottleneck!r}")
    if opts.max_update < 1 or opts.batch_size < 1:
        raise ValueError("max_update and batch_size must be >= 1")
    if not opts.cpu:
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--gpu asks for CUDA, but torch sees no CUDA device here: train without --gpu")
    data_dir = resolve_data_dir(opts.dataset, opts.data_dir)
    load_image_dataset(opts.dataset, data_dir)  # fail here, in one line, rather than deep inside fairseq-train
    argv = [
        str(data_dir), "--user-dir", PLUGIN_DIR,
        "--task", "vqnat_image", "--dataset", opts.dataset,
        "--max-train-images", str(opts.max_train_images), "--max-eval-images", str(opts.max_eval_images),
        "--arch", f"vqnat_image_vqvae_{opts.arch}", "--bottleneck", opts.bottleneck,
        "--criterion", "vqnat_image_bits",
        "--optimizer", "adam", "--lr", str(opts.lr), "--batch-size", str(opts.batch_size),
        "--required-batch-size-multiple", "1",  # else fairseq drops the last partial batch (STACK.md trap 2)
        "--max-update", str(opts.max_update), "--seed", str(opts.seed),
        "--save-dir", opts.save_dir, "--no-epoch-checkpoints",
        "--log-format", "simple", "--log-interval", str(opts.log_interval),
    ]
    for flag, value in (("--codebook-size", opts.codebook_size), ("--latent-dim", opts.latent_dim),
                        ("--num-samples", opts.num_samples), ("--soft-temperature", opts.soft_temperature)):
        if value is not None:
            argv += [flag, str(value)]
    if opts.kmeans_init:
        argv.append("--kmeans-init")
    if opts.cpu:
        argv.append("--cpu")
    return argv + list(opts.extra)


def run_fairseq_train(argv: list[str], save_dir: str | Path, threads: int | None = None) -> TrainStats:
    """Run ``fairseq-train argv`` in a subprocess (output passes through); write ``save_dir/train_stats.json``."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "fairseq_cli.train", *argv]
    logger.info("running: fairseq-train %s", " ".join(argv))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with start_child(command, env=env) as proc, forwarding_signals(proc) as forwarded:
        returncode = proc.wait()
    if forwarded:
        raise KeyboardInterrupt(f"fairseq-train stopped by signal {forwarded[0]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = TrainStats(wall_s=round(wall, 2), cpu_s=round(cpu, 2), returncode=returncode,
                       argv=["fairseq-train", *argv])
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    (Path(save_dir) / "train_stats.json").write_text(json.dumps(asdict(stats), indent=2) + "\n")
    return stats
