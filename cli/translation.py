"""Translation verbs: ``train teacher``, ``train nat``, ``distill``, ``translate``, ``evaluate translation``, ``bench``.

Thin wrappers: parse options, call :mod:`vqnat.pipeline` / :mod:`vqnat.inference`, print results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from cli.errors import friendly_errors
from vqnat.inference import DecodingOptions, Translator
from vqnat.pipeline.bench import System, format_table, plot_report, run_bench
from vqnat.pipeline.distill import distill as distill_corpus
from vqnat.pipeline.evaluate import evaluate_checkpoint
from vqnat.pipeline.fairseq_run import run_fairseq
from vqnat.pipeline.prepared import open_prepared
from vqnat.pipeline.presets import NAT_ARCHS, TEACHER_SIZES, TrainBudget, nat_train_args, teacher_train_args

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

DATA = typer.Option(..., "--data", "-d", help="Folder written by `vqnat prepare` (or `vqnat distill`).")
SAVE_DIR = typer.Option(..., "--save-dir", "-s", help="Where checkpoints go; an existing checkpoint_last.pt is "
                                                      "resumed, so an interrupted run loses nothing.")
DEVICE = typer.Option("cpu", help="cpu or cuda.")
# NAT decoding options shared by translate and evaluate.
COLLAPSE_REPEATS = typer.Option(False, help="NAT: drop consecutive repeated tokens.")
LATENT_BEAM = typer.Option(1, min=1, help="NAT: beam search over the latents (1 = greedy).")
RESCORE_WITH = typer.Option(None, help="NAT: teacher checkpoint that picks the best of the --latent-beam "
                                       "candidates (noisy parallel decoding).")
LENGTH_RATIO = typer.Option(None, help="NAT: decode ratio * source length (+ offset) positions instead of the "
                                       "trained rule.")
LENGTH_OFFSET = typer.Option(None, help="NAT: extra positions (with --length-ratio, or the length predictor's).")


def _budget(max_epoch: int, max_update: int, max_tokens: int, lr: float, warmup: int, seed: int) -> TrainBudget:
    return TrainBudget(max_epoch=max_epoch, max_update=max_update, max_tokens=max_tokens, lr=lr,
                       warmup_updates=warmup, seed=seed)


def _check_device(device: str) -> bool:
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda but torch sees no GPU: use --device cpu")
    return device == "cpu"


@friendly_errors
def train_teacher(
    ctx: typer.Context,
    data: Path = DATA,
    save_dir: Path = SAVE_DIR,
    size: str = typer.Option("cpu", help=f"Teacher size: {', '.join(TEACHER_SIZES)}."),
    max_epoch: int = typer.Option(8, help="Epochs (BASELINES.md: 8 epochs = 19.7 greedy BLEU, ~50 min on 2 cores)."),
    max_update: int = typer.Option(0, help="Stop after this many updates (0 = no limit)."),
    max_tokens: int = typer.Option(4096, help="Tokens per batch."),
    lr: float = typer.Option(7e-4, help="Peak learning rate (inverse square root schedule)."),
    warmup: int = typer.Option(1000, help="Warm-up updates."),
    seed: int = typer.Option(1, help="Random seed."),
    device: str = DEVICE,
) -> None:
    """Train the autoregressive Transformer teacher with fairseq-train.

    Extra options after the known ones go to fairseq-train unchanged.

    Example: vqnat train teacher --data work/bible --save-dir work/teacher --max-epoch 8
    """
    folder = open_prepared(data)
    args = teacher_train_args(folder.data_bin, save_dir, size, _budget(max_epoch, max_update, max_tokens, lr,
                                                                       warmup, seed), cpu=_check_device(device))
    save_dir.mkdir(parents=True, exist_ok=True)
    run_fairseq("train", args + ctx.args, log_path=save_dir / "train.log", echo=True)
    typer.echo(f"teacher checkpoints in {save_dir} (checkpoint_best.pt, checkpoint_last.pt)")


@friendly_errors
def train_nat(
    ctx: typer.Context,
    data: Path = DATA,
    save_dir: Path = SAVE_DIR,
    arch: str = typer.Option("vqnat_lt_cpu", help=f"Size preset: {', '.join(NAT_ARCHS)}."),
    bottleneck: str = typer.Option("soft", help="soft (soft EM, the paper's) or hard (EMA k-means baseline)."),
    num_samples: int = typer.Option(10, help="Soft-EM samples per latent (m)."),
    codebook_size: int = typer.Option(0, help="Codes K (0 = the preset's; the paper uses 4096)."),
    prior_warmup: int = typer.Option(0, help="Updates before the latent prior's loss is switched on."),
    length_rule: str = typer.Option("predictor", help="Target length: predictor (a length classifier + 2 "
                                                      "positions; measured better) or ratio (the reference's "
                                                      "ratio * source length; see --length-ratio)."),
    max_epoch: int = typer.Option(8, help="Epochs."),
    max_update: int = typer.Option(0, help="Stop after this many updates (0 = no limit)."),
    max_tokens: int = typer.Option(4096, help="Tokens per batch."),
    lr: float = typer.Option(7e-4, help="Peak learning rate (inverse square root schedule)."),
    warmup: int = typer.Option(1000, help="Warm-up updates."),
    seed: int = typer.Option(1, help="Random seed."),
    device: str = DEVICE,
) -> None:
    """Train the latent transformer (non-autoregressive, VQ latents) with fairseq-train.

    Train it on distilled data (`vqnat distill`) for the best BLEU. Extra options go to fairseq-train, e.g.
    `--codebook-decay 0.99 --codebook-slices 2 --length-loss-weight 0.2` (with `--length-rule ratio`:
    `--length-ratio 1.5`).

    Example: vqnat train nat --data work/bible-distilled --save-dir work/nat-soft --bottleneck soft
    """
    folder = open_prepared(data)
    extra = ["--num-samples", str(num_samples), "--prior-warmup-updates", str(prior_warmup)]
    if codebook_size:
        extra += ["--codebook-size", str(codebook_size)]
    args = nat_train_args(folder.data_bin, save_dir, arch, bottleneck,
                          _budget(max_epoch, max_update, max_tokens, lr, warmup, seed), extra=extra,
                          cpu=_check_device(device), length_rule=length_rule)
    save_dir.mkdir(parents=True, exist_ok=True)
    run_fairseq("train", args + ctx.args, log_path=save_dir / "train.log", echo=True)
    typer.echo(f"latent transformer checkpoints in {save_dir} (checkpoint_best.pt, checkpoint_last.pt)")


@friendly_errors
def distill(
    teacher: Path = typer.Option(..., "--teacher", "-t", help="Teacher checkpoint."),
    data: Path = DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the distilled corpus (a prepared folder)."),
    beam: int = typer.Option(4, min=1, help="Teacher beam size."),
    max_tokens: int = typer.Option(8192, help="Tokens per decoding batch."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Redo even if the folder is already distilled."),
) -> None:
    """Sequence-level knowledge distillation: the teacher beam-decodes the training source; its outputs become
    the targets of a new prepared folder (valid/test keep the real references). Reports the teacher's valid BLEU.

    Example: vqnat distill --teacher work/teacher/checkpoint_best.pt --data work/bible --out work/bible-distilled
    """
    report = distill_corpus(teacher, data, out, beam=beam, max_tokens=max_tokens, cpu=_check_device(device),
                            force=force)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@friendly_errors
def translate(
    model: Path = typer.Option(..., "--model", "-m", help="NAT or teacher checkpoint."),
    data_dir: Path | None = typer.Option(None, help="data-bin with the dictionaries, or the `vqnat prepare` "
                                                     "folder that holds it (default: the one recorded in the "
                                                     "checkpoint)."),
    input: str = typer.Option("-", "--input", "-i", help="Text file, one sentence per line; - for stdin."),
    output: str = typer.Option("-", "--output", "-o", help="Output file; - for stdout."),
    batch_size: int = typer.Option(64, min=1, help="Sentences per model call."),
    beam: int = typer.Option(1, min=1, help="Beam size (teacher only; 1 = greedy)."),
    collapse_repeats: bool = COLLAPSE_REPEATS,
    latent_beam: int = LATENT_BEAM,
    rescore_with: Path | None = RESCORE_WITH,
    length_ratio: float | None = LENGTH_RATIO,
    length_offset: int | None = LENGTH_OFFSET,
    device: str = DEVICE,
) -> None:
    """Translate text, one sentence per line, with a NAT or an autoregressive checkpoint.

    Example: echo "In the beginning was the Word." | vqnat translate --model work/nat-soft/checkpoint_best.pt

    Noisy parallel decoding: --latent-beam 4 --rescore-with work/teacher/checkpoint_best.pt

    A progress bar (sentences translated) goes to stderr when it is a terminal.
    """
    _check_device(device)
    if input != "-" and not Path(input).is_file():
        raise ValueError(f"input file not found: {input}")
    text = sys.stdin.read() if input == "-" else Path(input).read_text(encoding="utf-8")
    options = DecodingOptions(beam=beam, collapse_repeated_tokens=collapse_repeats, latent_beam=latent_beam,
                              length_ratio=length_ratio, length_offset=length_offset)
    translator = Translator.load(model, data_dir=data_dir, device=device, options=options, rescorer=rescore_with)
    result = "\n".join(translator.translate(text.splitlines(), batch_size=batch_size, progress=True)) + "\n"
    if output == "-":
        sys.stdout.write(result)
    else:
        Path(output).write_text(result, encoding="utf-8")


@friendly_errors
def evaluate_translation(
    model: Path = typer.Option(..., "--model", "-m", help="NAT or teacher checkpoint."),
    data: Path = DATA,
    split: str = typer.Option("test", help="valid or test."),
    beam: int = typer.Option(1, min=1, help="Beam size (teacher only)."),
    batch_size: int = typer.Option(64, min=1, help="Sentences per model call."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result here."),
    collapse_repeats: bool = COLLAPSE_REPEATS,
    latent_beam: int = LATENT_BEAM,
    rescore_with: Path | None = RESCORE_WITH,
    length_ratio: float | None = LENGTH_RATIO,
    length_offset: int | None = LENGTH_OFFSET,
    device: str = DEVICE,
) -> None:
    """sacreBLEU and chrF (with signatures) of a checkpoint on a prepared split.

    Example: vqnat evaluate translation --model work/teacher/checkpoint_best.pt --data work/bible --beam 4
    """
    _check_device(device)
    options = DecodingOptions(beam=beam, latent_beam=latent_beam, length_ratio=length_ratio,
                              length_offset=length_offset, collapse_repeated_tokens=collapse_repeats)
    result = evaluate_checkpoint(model, data, split=split, batch_size=batch_size, options=options, device=device,
                                 rescorer=rescore_with)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    typer.echo(text)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n", encoding="utf-8")


@friendly_errors
def bench(
    nat: Path = typer.Option(..., help="Latent transformer checkpoint."),
    teacher: Path = typer.Option(..., help="Autoregressive teacher checkpoint."),
    data: Path = DATA,
    hard_nat: Path | None = typer.Option(None, help="Optional hard-EM latent transformer, timed too."),
    deep_shallow: Path | None = typer.Option(None, help="Optional deep-encoder/shallow-decoder AR baseline."),
    npd: int = typer.Option(0, min=0, help="Also time noisy parallel decoding: the teacher rescores this many "
                                           "latent-beam candidates of the NAT (0 = off)."),
    extra_nat: list[str] = typer.Option([], help="More NAT rows, NAME=CHECKPOINT (repeatable), e.g. another "
                                                 "length rule."),
    split: str = typer.Option("test", help="Prepared split to translate."),
    limit: int = typer.Option(0, min=0, help="Use only the first N sentences (0 = all)."),
    large_batch: int = typer.Option(128, min=1, help="Sentences per call in the large-batch run."),
    threads: int = typer.Option(2, min=1, help="torch threads for every system."),
    out: Path = typer.Option(Path("results/bench_translation.json"), help="JSON report."),
    plot: Path = typer.Option(Path("results/bench_translation.png"), help="PNG plot."),
    device: str = DEVICE,
) -> None:
    """Latency comparison against the autoregressive teacher: NAT vs teacher greedy vs teacher beam 4, batch 1
    and a large batch, in one process on the same sentences; BLEU of each; speedups vs greedy.

    Example: vqnat bench --nat work/nat-soft/checkpoint_best.pt --teacher work/teacher/checkpoint_best.pt
    --data work/bible-distilled
    """
    systems = [System("nat soft" if hard_nat else "nat", nat, DecodingOptions())]
    if npd:
        systems.append(System(f"{systems[0].name} + NPD {npd}", nat, DecodingOptions(latent_beam=npd), teacher))
    if hard_nat:
        systems.append(System("nat hard", hard_nat, DecodingOptions()))
    for item in extra_nat:
        name, _, path = item.partition("=")
        if not name or not path:
            raise ValueError(f"--extra-nat takes NAME=CHECKPOINT, got {item!r}")
        systems.append(System(name, Path(path), DecodingOptions()))
    systems += [System("teacher greedy", teacher, DecodingOptions(beam=1)),
                System("teacher beam 4", teacher, DecodingOptions(beam=4))]
    if deep_shallow:
        systems.append(System("deep-shallow greedy", deep_shallow, DecodingOptions(beam=1)))
    _check_device(device)
    report = run_bench(systems, data, split=split, limit=limit or None, large_batch=large_batch, threads=threads,
                       progress=lambda msg: typer.echo(msg, err=True), device=device)
    typer.echo(format_table(report))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_report(report, plot)
    typer.echo(f"wrote {out} and {plot}")
