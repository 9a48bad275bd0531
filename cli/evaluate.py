"""``vqnat evaluate``: one command per model family (``vqnat evaluate image``, ...), joined into this sub-app."""

from __future__ import annotations

import typer
from vqnat_cli import bleu, image, translation
from vqnat_cli.settings import TYPER_SETTINGS

evaluate_app = typer.Typer(
    help="Evaluate a trained model on a data split.",
    **TYPER_SETTINGS,
)
evaluate_app.command(name="image")(image.evaluate_image)
evaluate_app.command(name="translation")(translation.evaluate_translation)
evaluate_app.command(name="bleu")(bleu.evaluate_bleu)
