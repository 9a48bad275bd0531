"""``vqnat export``: a fairseq checkpoint -> a model bundle (a thin layer over :mod:`vqnat.pipeline.export`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from vqnat_cli.errors import friendly_errors
from vqnat_cli.options import TRUST_CHECKPOINT


@friendly_errors
def export(
    checkpoint: Path = typer.Argument(..., help="A vqnat or fairseq checkpoint (.pt), teacher or NAT."),
    out: Path = typer.Option(..., "--out", "-o", help="The bundle folder to write (new or empty)."),
    data_dir: Path | None = typer.Option(None, help="The prepared (or data-bin) folder with the dictionaries "
                                                    "(default: the one recorded in the checkpoint)."),
    dtype: str = typer.Option("float16", help="How weights are stored: float16, bfloat16 or float32."),
    inference_only: bool = typer.Option(False, "--inference-only", help="NAT: leave out what only training "
                                                                        "uses (the bundle cannot resume training)."),
    evaluate_on: Path | None = typer.Option(None, help="A prepared folder: score the bundle on its valid and test "
                                                       "splits and record the scores in the bundle."),
    notes: str | None = typer.Option(None, help="A line for the model card, e.g. how the model was trained."),
    collapse_repeats: bool | None = typer.Option(
        None, "--collapse-repeats/--no-collapse-repeats",
        help="NAT: the bundle's default for dropping consecutive repeated tokens (default: the checkpoint's)."),
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Write a model bundle: model.safetensors (no pickle), config.json with the model config and provenance, the
    dictionaries, the sentencepiece model and a model card. Every command that takes a model takes a bundle.

    Example: vqnat export work/nat-soft/checkpoint_best.pt --out models/my-nat --evaluate-on work/bible-distilled
    """
    from vqnat.pipeline.export import export_model

    config = export_model(checkpoint, out, data_dir=data_dir, dtype=dtype, inference_only=inference_only,
                          trust=trust_checkpoint, evaluate_on=evaluate_on, notes=notes,
                          collapse_repeats=collapse_repeats, say=lambda msg: typer.echo(msg, err=True))
    size = (out / "model.safetensors").stat().st_size / 2**20
    typer.echo(json.dumps({"bundle": str(out), "kind": config["kind"], "weights_mib": round(size, 1),
                           "inference_only": config["inference_only"], "dtype": config["dtype"],
                           "scores": config["provenance"].get("scores", [])}, indent=2))
