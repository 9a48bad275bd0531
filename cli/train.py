"""``vqnat train``: one command per model family (``vqnat train image``, ...), joined into this sub-app."""

from __future__ import annotations

import typer
from vqnat_cli import image, translation
from vqnat_cli.settings import TYPER_SETTINGS

train_app = typer.Typer(
    help="Train a model (wraps fairseq-train with vqnat's plugins registered).",
    **TYPER_SETTINGS,
)
train_app.command(
    name="image",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)(image.train_image)
train_app.command(name="teacher", context_settings=translation.PASSTHROUGH)(translation.train_teacher)
train_app.command(name="nat", context_settings=translation.PASSTHROUGH)(translation.train_nat)
