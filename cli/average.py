"""``vqnat average``: checkpoint averaging (a thin layer over :mod:`vqnat.pipeline.average`)."""

from __future__ import annotations

from pathlib import Path

import typer
from vqnat_cli.errors import friendly_errors
from vqnat_cli.options import TRUST_CHECKPOINT


@friendly_errors
def average(
    checkpoints: list[Path] = typer.Argument(None, help="Checkpoints of one run to average (or use --save-dir)."),
    save_dir: Path = typer.Option(None, "--save-dir", "-s", help="A training run's folder: average its --last "
                                                                 "numbered checkpoints."),
    last: int = typer.Option(5, help="With --save-dir: how many of the newest interval (or epoch) checkpoints."),
    out: Path = typer.Option(..., "--out", "-o", help="The averaged checkpoint (no optimizer state)."),
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Average the weights of several checkpoints of one run (fairseq's scripts/average_checkpoints.py, which a
    pip install lacks). Works for the NAT and the teacher; translate with the result as with any checkpoint.

    Example: vqnat average --save-dir work/nat-soft --last 5 --out work/nat-soft/averaged.pt

    Example: vqnat average work/nat-soft/checkpoint_3_900.pt work/nat-soft/checkpoint_4_1200.pt --out avg.pt
    """
    from vqnat.pipeline.average import average_checkpoints, last_checkpoints

    if bool(checkpoints) == (save_dir is not None):
        raise ValueError("give either checkpoint files or --save-dir (with --last), not both or neither")
    paths = last_checkpoints(save_dir, last) if save_dir is not None else checkpoints
    report = average_checkpoints(paths, out, trust=trust_checkpoint)
    names = ", ".join(Path(p).name for p in report["checkpoints"])
    typer.echo(f"averaged {len(report['checkpoints'])} checkpoints ({names}) -> {out}")
