"""``vqnat evaluate``: one command per model family (``vqnat evaluate image``, ...), joined into this sub-app."""

from __future__ import annotations

import typer

from cli import bleu, image, translation

evaluate_app = typer.Typer(
    help="Evaluate a trained model on a data split.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
evaluate_app.command(name="image")(image.evaluate_image)
evaluate_app.command(name="translation")(translation.evaluate_translation)
evaluate_app.command(name="bleu")(bleu.evaluate_bleu)
