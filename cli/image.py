"""``vqnat image``: the image VQ-VAE's commands (train, evaluate, sample, reconstruct), joined into one sub-app.

Thin: parse options, call :mod:`vqnat.pipeline.image_training` / :mod:`vqnat.pipeline.image_inference`, print or
write files. The options speak the translation commands' dialect (``-m/--model``, ``--device``, ``-s/--save-dir``)
and errors are one ``Error:`` line (:func:`vqnat_cli.errors.friendly_errors`).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from vqnat_cli.errors import friendly_errors
from vqnat_cli.options import DEVICE, SAVE_DIR, TRUST_CHECKPOINT, check_device
from vqnat_cli.settings import PASSTHROUGH, TYPER_SETTINGS
from vqnat_cli.training import run_training

# torch, fairseq and the model load inside the commands that use them: `vqnat image --help` stays fast.
MODEL = typer.Option(..., "--model", "-m", help="An image VQ-VAE checkpoint (.pt) written by `vqnat image train`.")
DATA_DIR = typer.Option(None, help="Dataset folder (default: the one saved in the checkpoint).")
SPLIT = typer.Option("test", help="train, valid or test.")


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


PIXELS = typer.Option(PixelMode.mean, help="How decoder distributions become pixels: mean (expected value), mode "
                                           "(most likely value) or sample (independent draws per subpixel).")


@friendly_errors
def train(
    ctx: typer.Context,
    dataset: Dataset = typer.Option(..., help="Image dataset."),
    save_dir: Path = SAVE_DIR,
    data_dir: Path | None = typer.Option(None, help="Dataset folder (default: the copy `make install` put in "
                                         "place; CIFAR-10 needs a cifar-10-batches-py folder)."),
    bottleneck: Bottleneck = typer.Option(Bottleneck.hard, help="EM flavour of the VQ bottleneck."),
    arch: Arch = typer.Option(Arch.tiny, help="Model size preset (vqnat_image_vqvae_tiny / _base)."),
    max_update: int = typer.Option(2000, min=1, help="Training updates (the compute budget)."),
    batch_size: int = typer.Option(64, min=1, help="Images per update."),
    lr: float = typer.Option(1e-3, min=0.0, help="Adam learning rate."),
    seed: int = typer.Option(1, help="Random seed (model init, batches, soft-EM samples)."),
    max_train_images: int = typer.Option(0, min=0, help="Use only the first N training images (0 = all)."),
    max_eval_images: int = typer.Option(2000, min=0, help="Validate on the first N valid images (0 = all)."),
    codebook_size: int | None = typer.Option(None, min=1, help="K, codes (default: the preset's)."),
    latent_dim: int | None = typer.Option(None, min=1, help="D, latent size (default: the preset's)."),
    num_samples: int | None = typer.Option(None, min=1, help="m, soft-EM samples per latent (default 10)."),
    softmax_temperature: float | None = typer.Option(None, min=0.0, help="tau of soft EM (default 1)."),
    threads: int | None = typer.Option(None, min=1, help="torch threads of the trainer (OMP_NUM_THREADS; default: "
                                                         "the environment's)."),
    device: str = DEVICE,
) -> None:
    """Train an image VQ-VAE (hard or soft EM bottleneck) with fairseq-train.

    Extra options after the known ones go to fairseq-train unchanged (e.g. --clip-norm 1.0), among them the
    bottleneck's other options as `vqnat train nat` names them (--codebook-slices 2, --beta 0.5, --codebook-decay
    0.999), and --kmeans-init / --reseed-dead-codes, which switch on what the image presets switch off.

    The terminal shows regular progress lines; fairseq's whole output goes to SAVE_DIR/train.log, and what the
    run cost to SAVE_DIR/train_stats.json. Ctrl-C (or a kill of vqnat) stops the trainer too, and the same
    command resumes.

    Example: vqnat image train --dataset fashion-mnist --bottleneck soft --save-dir checkpoints/fm_soft

    Example: vqnat image train --dataset cifar10 --data-dir ~/data/cifar-10-batches-py --arch base --device cuda
    -s checkpoints/cifar_soft --bottleneck soft --validate-interval-updates 1000
    """
    from vqnat.checkpoint import mark_own_save_dir
    from vqnat.pipeline.image_training import ImageTrainOptions, image_train_argv, run_image_training

    opts = ImageTrainOptions(
        dataset=dataset.value, save_dir=str(save_dir), data_dir=str(data_dir) if data_dir else None,
        bottleneck=bottleneck.value, arch=arch.value, max_update=max_update, batch_size=batch_size, lr=lr,
        seed=seed, max_train_images=max_train_images, max_eval_images=max_eval_images,
        codebook_size=codebook_size, latent_dim=latent_dim, num_samples=num_samples,
        softmax_temperature=softmax_temperature, cpu=check_device(device),
        extra=tuple(ctx.args),
    )
    argv = image_train_argv(opts)
    mark_own_save_dir(save_dir)  # its checkpoints load without --trust-checkpoint
    stats = run_image_training(argv, save_dir, lambda args: run_training(args, save_dir),
                               threads=threads)
    typer.echo(f"trained in {stats.wall_s:.0f} s wall, {stats.cpu_s:.0f} s CPU; checkpoints in {save_dir}")


@friendly_errors
def evaluate(
    model: Path = MODEL,
    split: str = SPLIT,
    data_dir: Path | None = DATA_DIR,
    max_images: int = typer.Option(0, min=0, help="Evaluate only the first N images (0 = all)."),
    batch_size: int = typer.Option(256, min=1, help="Images per forward pass."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
    device: str = DEVICE,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Bits/dim (uniform and learned latent prior) and codebook usage of a trained image VQ-VAE.

    Example: vqnat image evaluate --model checkpoints/fm_soft/checkpoint_last.pt

    Example: vqnat image evaluate -m checkpoints/fm_soft/checkpoint_last.pt --split valid --json valid.json
    """
    from vqnat.data.images import load_image_dataset
    from vqnat.pipeline.image_inference import evaluate_images, load_image_model

    check_device(device)
    loaded = load_image_model(model, data_dir=str(data_dir) if data_dir else None, device=device,
                              trust=trust_checkpoint)
    images = load_image_dataset(loaded.dataset, data_dir or loaded.data_dir).split(split)
    if max_images:
        images = images[:max_images]
    result = evaluate_images(loaded.net, images, batch_size=batch_size)
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
        payload = {"checkpoint": str(model), "dataset": loaded.dataset, "split": split,
                   "bottleneck": loaded.bottleneck, "arch": loaded.arch, **result.as_dict()}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")


@friendly_errors
def sample(
    model: Path = MODEL,
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="PNG grid to write."),
    num: int = typer.Option(64, min=1, max=1024, help="Images to sample."),
    temperature: float = typer.Option(1.0, min=0.01, help="Softmax temperature of the latent prior."),
    seed: int = typer.Option(0, help="Random seed."),
    pixels: PixelMode = PIXELS,
    device: str = DEVICE,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Sample new images: latent codes from the learned prior, decoded to a PNG grid.

    Example: vqnat image sample --model checkpoints/fm_soft/checkpoint_last.pt -o samples.png

    Example: vqnat image sample -m checkpoints/fm_soft/checkpoint_last.pt --num 16 --temperature 0.8 --seed 3
    """
    from vqnat.data.image_grid import make_grid, save_png
    from vqnat.pipeline.image_inference import load_image_model, sample_images

    check_device(device)
    loaded = load_image_model(model, device=device, trust=trust_checkpoint)
    images = sample_images(loaded.net, num, temperature=temperature, seed=seed, pixel_mode=pixels.value)
    typer.echo(f"wrote {save_png(make_grid(images), out)} ({num} samples)")


@friendly_errors
def reconstruct(
    model: Path = MODEL,
    out: Path = typer.Option(Path("reconstructions.png"), "--out", "-o", help="PNG to write."),
    num: int = typer.Option(16, min=1, max=1024, help="Images to reconstruct (the first N of the split)."),
    split: str = SPLIT,
    data_dir: Path | None = DATA_DIR,
    columns: int = typer.Option(8, min=1, help="Images per row; each row of originals has its reconstructions "
                                "right below it."),
    pixels: PixelMode = PIXELS,
    device: str = DEVICE,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Originals next to their reconstructions (encode -> nearest codes -> decode), as one PNG.

    Example: vqnat image reconstruct --model checkpoints/fm_soft/checkpoint_last.pt -o recon.png

    Example: vqnat image reconstruct -m checkpoints/fm_soft/checkpoint_last.pt --num 32 --split valid
    """
    from vqnat.data.image_grid import interleave_rows, make_grid, save_png
    from vqnat.data.images import load_image_dataset
    from vqnat.pipeline.image_inference import load_image_model, reconstruct_images

    check_device(device)
    loaded = load_image_model(model, data_dir=str(data_dir) if data_dir else None, device=device,
                              trust=trust_checkpoint)
    originals = load_image_dataset(loaded.dataset, data_dir or loaded.data_dir).split(split)[:num]
    recon = reconstruct_images(loaded.net, originals, pixel_mode=pixels.value)
    typer.echo(f"wrote {save_png(make_grid(interleave_rows(originals, recon, columns), columns), out)} "
               f"({len(originals)} originals, each with its reconstruction below)")


app = typer.Typer(help="The image VQ-VAE: train it with fairseq-train, measure bits/dim, sample, reconstruct.",
                  **TYPER_SETTINGS)
app.command(name="train", context_settings=PASSTHROUGH)(train)
app.command(name="evaluate")(evaluate)
app.command(name="sample")(sample)
app.command(name="reconstruct")(reconstruct)
