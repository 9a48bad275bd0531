"""``vqnat evaluate``: the translation side's measurements (``vqnat evaluate translation``, ``vqnat evaluate bleu``).

The image VQ-VAE is measured with ``vqnat image evaluate`` (:mod:`vqnat_cli.image`).
"""

from __future__ import annotations

import typer
from vqnat_cli import bleu, translation
from vqnat_cli.settings import TYPER_SETTINGS

evaluate_app = typer.Typer(
    help="Evaluate a trained translation model, or score translations, on a data split.",
    **TYPER_SETTINGS,
)
evaluate_app.command(name="translation")(translation.evaluate_translation)
evaluate_app.command(name="bleu")(bleu.evaluate_bleu)
