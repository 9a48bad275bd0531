"""``vqnat train``: the translation models' training commands (``vqnat train teacher``, ``vqnat train nat``).

The image VQ-VAE trains with ``vqnat image train`` (:mod:`vqnat_cli.image`).
"""

from __future__ import annotations

import typer
from vqnat_cli import translation
from vqnat_cli.settings import PASSTHROUGH, TYPER_SETTINGS

train_app = typer.Typer(
    help="Train a translation model (wraps fairseq-train with vqnat's plugins registered).",
    **TYPER_SETTINGS,
)
train_app.command(name="teacher", context_settings=PASSTHROUGH)(translation.train_teacher)
train_app.command(name="nat", context_settings=PASSTHROUGH)(translation.train_nat)
