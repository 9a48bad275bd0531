"""Options that several commands share, declared once."""

from __future__ import annotations

import typer

SAVE_DIR = typer.Option(..., "--save-dir", "-s", help="Where checkpoints go; an existing checkpoint_last.pt is "
                                                      "resumed, so an interrupted run loses nothing.")
DEVICE = typer.Option("cpu", help="cpu or cuda.")
TRUST_CHECKPOINT = typer.Option(
    False, "--trust-checkpoint",
    help="Allow a pickled .pt checkpoint from outside vqnat's own training folders. Loading a pickle can run code: "
         "only for checkpoints you trust (a model bundle never needs this).")


def model_option(role: str, *names: str) -> typer.models.OptionInfo:
    """``--model``-like option: a bundle folder or a checkpoint; None means the shipped default model."""
    return typer.Option(None, *names, help=f"{role.capitalize()} model: a bundle folder (`vqnat export`) or a .pt "
                                           f"checkpoint (default: the shipped {role} bundle under models/).")


def check_device(device: str) -> bool:
    """Refuse a ``--device`` other than cpu or cuda, and cuda without a GPU; True for cpu."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda but torch sees no GPU: use --device cpu")
    return device == "cpu"
