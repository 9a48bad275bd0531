"""Train the image VQ-VAE with fairseq-train and record what the run cost.

:func:`image_train_argv` turns the options of ``vqnat image train`` into fairseq-train's arguments (the one place
that maps them); :func:`run_image_training` runs them through a fairseq runner (the CLI's: locked save folder,
output to ``train.log``; see :mod:`vqnat.pipeline.fairseq_run`) and writes ``<save_dir>/train_stats.json``: wall
and CPU seconds of the trainer and its exact command.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from vqnat.data.images import DATASETS, load_image_dataset, resolve_data_dir
from vqnat.pipeline.fairseq_run import USER_DIR

logger = logging.getLogger(__name__)

ARCHS = ("tiny", "base")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what sets torch's threads in a child


@dataclass(frozen=True)
class ImageTrainOptions:
    """What ``vqnat image train`` asks for; anything else goes to fairseq-train through ``extra`` (e.g. the other
    bottleneck options: ``--kmeans-init``, ``--codebook-slices 2``, ``--beta 0.5``)."""

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
    softmax_temperature: float | None = None
    log_interval: int = 50
    cpu: bool = True
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainStats:
    """What a finished run cost: wall and CPU seconds (user + system) of the trainer, and its command."""

    wall_s: float
    cpu_s: float
    argv: list[str]


def image_train_argv(opts: ImageTrainOptions) -> list[str]:
    """fairseq-train's arguments (without the program name) for ``opts``.

    Raises:
        ValueError: unknown dataset/arch/bottleneck, or a dataset folder that is missing or malformed.

    Training on CUDA (``opts.cpu`` false) is the caller's to check: the CLI's ``--device cuda`` refuses a machine
    without a GPU.
    """
    if opts.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {opts.dataset!r}: choose one of {', '.join(DATASETS)}")
    if opts.arch not in ARCHS:
        raise ValueError(f"unknown arch {opts.arch!r}: choose one of {', '.join(ARCHS)}")
    if opts.bottleneck not in ("hard", "soft"):
        raise ValueError(f"bottleneck must be 'hard' or 'soft', got {opts.bottleneck!r}")
    if opts.max_update < 1 or opts.batch_size < 1:
        raise ValueError("max_update and batch_size must be >= 1")
    data_dir = resolve_data_dir(opts.dataset, opts.data_dir)
    load_image_dataset(opts.dataset, data_dir)  # fail here, in one line, rather than deep inside fairseq-train
    argv = [
        str(data_dir), "--user-dir", USER_DIR,
        "--task", "vqnat_image", "--dataset", opts.dataset,
        "--max-train-images", str(opts.max_train_images), "--max-eval-images", str(opts.max_eval_images),
        "--arch", f"vqnat_image_vqvae_{opts.arch}", "--bottleneck", opts.bottleneck,
        "--criterion", "vqnat_image_bits",
        "--optimizer", "adam", "--lr", str(opts.lr), "--batch-size", str(opts.batch_size),
        # fairseq's batch_by_size drops the last batch of an epoch when its size is not a multiple of this
        # (fairseq-train's default is 8): with 1, --batch-size and --max-eval-images of any value use every image.
        "--required-batch-size-multiple", "1",
        "--max-update", str(opts.max_update), "--seed", str(opts.seed),
        "--save-dir", opts.save_dir, "--no-epoch-checkpoints",
        "--log-format", "simple", "--log-interval", str(opts.log_interval),
    ]
    for flag, value in (("--codebook-size", opts.codebook_size), ("--latent-dim", opts.latent_dim),
                        ("--num-samples", opts.num_samples), ("--softmax-temperature", opts.softmax_temperature)):
        if value is not None:
            argv += [flag, str(value)]
    if opts.cpu:
        argv.append("--cpu")
    return argv + list(opts.extra)


def run_image_training(argv: Sequence[str], save_dir: str | Path, run: Callable[[list[str]], None],
                       threads: int | None = None) -> TrainStats:
    """fairseq-train ``argv`` through ``run`` (a runner of :mod:`vqnat.pipeline.fairseq_run` that raises when the
    trainer fails), timed; then ``save_dir/train_stats.json``.

    ``threads`` sets the trainer's torch threads (``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` of the child; this
    process's environment is restored afterwards). CPU seconds are those of the children that ended meanwhile,
    i.e. the trainer's.
    """
    argv = [str(arg) for arg in argv]
    logger.info("running: fairseq-train %s", " ".join(argv))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with _child_threads(threads):
        run(argv)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = TrainStats(wall_s=round(wall, 2), cpu_s=round(cpu, 2), argv=["fairseq-train", *argv])
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    (Path(save_dir) / "train_stats.json").write_text(json.dumps(asdict(stats), indent=2) + "\n")
    return stats


@contextmanager
def _child_threads(threads: int | None) -> Iterator[None]:
    """Within the block, child processes start with ``threads`` torch threads (None: as the environment says)."""
    if threads is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
