"""Options that several commands share, declared once."""

from __future__ import annotations

import typer

TRUST_CHECKPOINT = typer.Option(
    False, "--trust-checkpoint",
    help="Allow a pickled .pt checkpoint from outside vqnat's own training folders. Loading a pickle can run code: "
         "only for checkpoints you trust (a model bundle never needs this).")


def model_option(role: str, *names: str) -> typer.models.OptionInfo:
    """``--model``-like option: a bundle folder or a checkpoint; None means the shipped default model."""
    return typer.Option(None, *names, help=f"{role.capitalize()} model: a bundle folder (`vqnat export`) or a .pt "
                                           f"checkpoint (default: the shipped {role} bundle under models/).")
