"""``vqnat demo``: the main job on the embedded default data."""

from __future__ import annotations

import typer

from vqnat.experiments.em_comparison import compare_hard_soft_em


def demo(
    steps: int = typer.Option(50, min=1, help="EM steps."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Run what vqnat can do today.

    The translation pipeline (prepare -> teacher -> distill -> NAT -> bench) is not built yet; until it is,
    the demo runs the EM vector-quantization bottleneck itself: hard EM vs soft EM fitting 64 codes to a
    16-cluster Gaussian mixture, printing inertia and codebook usage.
    """
    typer.echo("Translation pipeline: not implemented yet. Running the VQ bottleneck (hard vs soft EM).")
    traces = compare_hard_soft_em(steps=steps, seed=seed)
    typer.echo(f"{'mode':<6}{'step':>6}{'inertia':>12}{'perplexity':>12}{'dead':>8}")
    for trace in traces:
        for step in sorted({0, steps // 4, steps // 2, steps - 1}):
            typer.echo(f"{trace.mode:<6}{step + 1:>6}{trace.inertia[step]:>12.1f}"
                       f"{trace.perplexity[step]:>12.1f}{trace.dead_fraction[step]:>8.2f}")
