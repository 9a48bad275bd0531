"""The ``vqnat`` command line: a thin Typer layer over the library.

Each verb lives in its own module as a Typer sub-app and is joined here with ``add_typer``.
"""

from __future__ import annotations

import logging

import typer
from vqnat_cli import average, demo, export, image, prepare, serve, translation
from vqnat_cli.evaluate import evaluate_app
from vqnat_cli.settings import TYPER_SETTINGS, keep_examples_as_written
from vqnat_cli.train import train_app

import vqnat

app = typer.Typer(
    name="vqnat",
    help="Non-autoregressive translation with EM-trained vector-quantized latents: "
    "distill, train, translate, serve, benchmark; and an image VQ-VAE.",
    **TYPER_SETTINGS,
    add_completion=False,
)
app.command(name="demo")(demo.demo)
app.add_typer(prepare.app, name="prepare")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(image.app, name="image")
app.command(name="distill")(translation.distill)
app.command(name="translate")(translation.translate)
app.command(name="bench")(translation.bench)
app.command(name="average")(average.average)
app.command(name="export")(export.export)
app.command(name="serve")(serve.serve)
keep_examples_as_written(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vqnat {vqnat.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    """vqnat: fast non-autoregressive translation with vector-quantized latents (Roy et al. 2018)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, force=True,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")


def main() -> None:
    app()
