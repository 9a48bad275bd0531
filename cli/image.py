"""The image VQ-VAE commands: ``vqnat train image``, ``vqnat evaluate image``, ``vqnat sample``, ``vqnat reconstruct``.

Thin: parse options, call :mod:`vqnat.image_training` / :mod:`vqnat.image_inference`, print or write files.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import numpy as np
import typer
from vqnat_cli.errors import INTERRUPTED_EXIT, fail

_CHECKPOINT_HELP = "A checkpoint written by `vqnat train image` (a pickle: only load checkpoints you trust)."


class Dataset(StrEnum):
    fashion_mnist = "fashion-mnist"
    mnist = "mnist"
    cifar10 = "cifar10"


class Bottleneck(StrEnum):
    hard = "hard"
    soft = "soft"


class Arch(StrEnum):
    tiny = "tiny"
    base = "base"


class PixelMode(StrEnum):
    mean = "mean"
    mode = "mode"
    sample = "sample"


_PIXELS_HELP = ("How decoder distributions become pixels: mean (expected value), mode (most likely value) or "
                "sample (independent draws per subpixel).")


def _fail(err: Exception) -> None:
    fail(err)


def train_image(
    ctx: typer.Context,
    dataset: Dataset = typer.Option(..., help="Image dataset."),
    data_dir: Path | None = typer.Option(None, help="Dataset folder (default: the copy `make install` put in "
                                         "place; CIFAR-10 needs a cifar-10-batches-py folder)."),
    bottleneck: Bottleneck = typer.Option(Bottleneck.hard, help="EM flavour of the VQ bottleneck."),
    arch: Arch = typer.Option(Arch.tiny, help="Model size preset (vqnat_image_vqvae_tiny / _base)."),
    save_dir: Path = typer.Option(..., "--save-dir", "-o", help="Checkpoints and train_stats.json go here."),
    max_update: int = typer.Option(2000, min=1, help="Training updates (the compute budget)."),
    batch_size: int = typer.Option(64, min=1, help="Images per update."),
    lr: float = typer.Option(1e-3, min=0.0, help="Adam learning rate."),
    seed: int = typer.Option(1, help="Random seed (model init, batches, soft-EM samples)."),
    max_train_images: int = typer.Option(0, min=0, help="Use only the first N training images (0 = all)."),
    max_eval_images: int = typer.Option(2000, min=0, help="Validate on the first N valid images (0 = all)."),
    codebook_size: int | None = typer.Option(None, min=1, help="K, codes (default: the preset's)."),
    latent_dim: int | None = typer.Option(None, min=1, help="D, latent size (default: the preset's)."),
    num_samples: int | None = typer.Option(None, min=1, help="m, soft-EM samples per latent (default 10)."),
    soft_temperature: float | None = typer.Option(None, min=0.0, help="tau of soft EM (default 1)."),
    kmeans_init: bool = typer.Option(False, "--kmeans-init", help="Initialise codes by k-means on batch one."),
    threads: int | None = typer.Option(None, min=1, help="CPU threads for torch (OMP_NUM_THREADS)."),
    gpu: bool = typer.Option(False, "--gpu", help="Train on CUDA (default: CPU)."),
) -> None:
    """Train an image VQ-VAE (hard or soft EM bottleneck) with fairseq-train.

    Extra options after the known ones go to fairseq-train unchanged (e.g. --clip-norm 1.0).

    Examples:

      vqnat train image --dataset fashion-mnist --bottleneck soft -o checkpoints/fm_soft

      vqnat train image --dataset mnist --arch base --max-update 20000 -o checkpoints/mnist_hard

      vqnat train image --dataset cifar10 --data-dir ~/data/cifar-10-batches-py --arch base --gpu \\
          -o checkpoints/cifar_soft --bottleneck soft --validate-interval-updates 1000
    """
    from vqnat.image_training import ImageTrainOptions, image_train_argv, run_fairseq_train

    opts = ImageTrainOptions(
        dataset=dataset.value, save_dir=str(save_dir), data_dir=str(data_dir) if data_dir else None,
        bottleneck=bottleneck.value, arch=arch.value, max_update=max_update, batch_size=batch_size, lr=lr,
        seed=seed, max_train_images=max_train_images, max_eval_images=max_eval_images,
        codebook_size=codebook_size, latent_dim=latent_dim, num_samples=num_samples,
        soft_temperature=soft_temperature,
        kmeans_init=kmeans_init, cpu=not gpu, extra=tuple(ctx.args),
    )
    try:
        argv = image_train_argv(opts)
    except ValueError as err:
        _fail(err)
    try:
        stats = run_fairseq_train(argv, save_dir, threads=threads)
    except KeyboardInterrupt:
        fail(f"interrupted: the same command resumes from {save_dir / 'checkpoint_last.pt'}", code=INTERRUPTED_EXIT)
    if stats.returncode != 0:
        _fail(RuntimeError(f"fairseq-train failed (exit code {stats.returncode}); see its output above"))
    typer.echo(f"trained in {stats.wall_s:.0f} s wall, {stats.cpu_s:.0f} s CPU; checkpoints in {save_dir}")


def evaluate_image(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help=_CHECKPOINT_HELP),
    split: str = typer.Option("test", help="train, valid or test."),
    data_dir: Path | None = typer.Option(None, help="Dataset folder (default: the one saved in the checkpoint)."),
    max_images: int = typer.Option(0, min=0, help="Evaluate only the first N images (0 = all)."),
    batch_size: int = typer.Option(256, min=1, help="Images per forward pass."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Bits/dim (uniform and learned latent prior) and codebook usage of a trained image VQ-VAE.

    Examples:

      vqnat evaluate image -c checkpoints/fm_soft/checkpoint_last.pt

      vqnat evaluate image -c checkpoints/fm_soft/checkpoint_last.pt --split valid --json valid.json
    """
    from vqnat.data.images import load_image_dataset
    from vqnat.image_inference import evaluate_images, load_image_model

    try:
        loaded = load_image_model(checkpoint, data_dir=str(data_dir) if data_dir else None)
        images = load_image_dataset(loaded.dataset, data_dir or loaded.data_dir).split(split)
        if max_images:
            images = images[:max_images]
        result = evaluate_images(loaded.net, images, batch_size=batch_size)
    except ValueError as err:
        _fail(err)
    rows = {
        "bits/dim (uniform prior)": f"{result.bpd:.4f}",
        "bits/dim (learned prior)": "-" if result.prior_bpd is None else f"{result.prior_bpd:.4f}",
        "reconstruction bits/dim": f"{result.recon_bpd:.4f}",
        "code perplexity": f"{result.perplexity:.1f} of {result.codebook_size}",
        "codes used / unused": f"{result.used_codes} / {result.unused_fraction:.1%}",
        "dead fraction (EMA)": f"{result.dead_fraction:.3f}",
    }
    typer.echo(f"{loaded.dataset} {split} ({result.num_images} images), {loaded.bottleneck} EM, {loaded.arch}")
    for name, value in rows.items():
        typer.echo(f"  {name:<26}{value}")
    if json_out:
        payload = {"checkpoint": str(checkpoint), "dataset": loaded.dataset, "split": split,
                   "bottleneck": loaded.bottleneck, "arch": loaded.arch, **result.as_dict()}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")


def sample(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help=_CHECKPOINT_HELP),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="PNG grid to write."),
    num: int = typer.Option(64, min=1, max=1024, help="Images to sample."),
    temperature: float = typer.Option(1.0, min=0.01, help="Softmax temperature of the latent prior."),
    seed: int = typer.Option(0, help="Random seed."),
    pixels: PixelMode = typer.Option(PixelMode.mean, help=_PIXELS_HELP),
) -> None:
    """Sample new images: latent codes from the learned prior, decoded to a PNG grid.

    Examples:

      vqnat sample -c checkpoints/fm_soft/checkpoint_last.pt -o samples.png

      vqnat sample -c checkpoints/fm_soft/checkpoint_last.pt --num 16 --temperature 0.8 --seed 3
    """
    from vqnat.data.image_grid import make_grid, save_png
    from vqnat.image_inference import load_image_model, sample_images

    try:
        loaded = load_image_model(checkpoint)
        images = sample_images(loaded.net, num, temperature=temperature, seed=seed, pixel_mode=pixels.value)
    except ValueError as err:
        _fail(err)
    typer.echo(f"wrote {save_png(make_grid(images), out)} ({num} samples)")


def reconstruct(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help=_CHECKPOINT_HELP),
    out: Path = typer.Option(Path("reconstructions.png"), "--out", "-o", help="PNG to write."),
    num: int = typer.Option(16, min=1, max=1024, help="Images to reconstruct (the first N of the split)."),
    split: str = typer.Option("test", help="train, valid or test."),
    data_dir: Path | None = typer.Option(None, help="Dataset folder (default: the one saved in the checkpoint)."),
    columns: int = typer.Option(8, min=1, help="Images per row; each row of originals has its reconstructions "
                                "right below it."),
    pixels: PixelMode = typer.Option(PixelMode.mean, help=_PIXELS_HELP),
) -> None:
    """Originals next to their reconstructions (encode -> nearest codes -> decode), as one PNG.

    Examples:

      vqnat reconstruct -c checkpoints/fm_soft/checkpoint_last.pt -o recon.png

      vqnat reconstruct -c checkpoints/fm_soft/checkpoint_last.pt --num 32 --split valid
    """
    from vqnat.data.image_grid import make_grid, save_png
    from vqnat.data.images import load_image_dataset
    from vqnat.image_inference import load_image_model, reconstruct_images

    try:
        loaded = load_image_model(checkpoint, data_dir=str(data_dir) if data_dir else None)
        originals = load_image_dataset(loaded.dataset, data_dir or loaded.data_dir).split(split)[:num]
        recon = reconstruct_images(loaded.net, originals, pixel_mode=pixels.value)
    except ValueError as err:
        _fail(err)
    typer.echo(f"wrote {save_png(make_grid(interleave_rows(originals, recon, columns), columns), out)} "
               f"({len(originals)} originals, each with its reconstruction below)")


def interleave_rows(top: np.ndarray, bottom: np.ndarray, columns: int) -> np.ndarray:
    """``[N, ...]`` twice -> ``[2N', ...]``: each row of ``columns`` originals followed by their reconstructions
    (the last row is padded with white images)."""
    n = len(top)
    pad = (-n) % columns
    if pad:
        blank = np.full((pad, *top.shape[1:]), 255, dtype=top.dtype)
        top, bottom = np.concatenate([top, blank]), np.concatenate([bottom, blank])
    rows = [part[i:i + columns] for i in range(0, len(top), columns) for part in (top, bottom)]
    return np.concatenate(rows)
