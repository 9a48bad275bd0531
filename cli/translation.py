"""Translation verbs: ``train teacher``, ``train nat``, ``distill``, ``translate``, ``evaluate translation``, ``bench``.

Thin wrappers: parse options, call :mod:`vqnat.pipeline` / :mod:`vqnat.inference`, print results.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from vqnat_cli.errors import friendly_errors
from vqnat_cli.lines import ResumableOutput, one_line, run_key, split_lines
from vqnat_cli.options import DEVICE, SAVE_DIR, TRUST_CHECKPOINT, check_device, model_option
from vqnat_cli.training import run_training

from vqnat.checkpoint import default_model, mark_own_save_dir, training_init
from vqnat.data.bible import held_out_text
from vqnat.pipeline.prepared import open_prepared
from vqnat.pipeline.presets import NAT_ARCHS, TEACHER_SIZES, TrainBudget, nat_train_args, teacher_train_args
from vqnat.quantization.config import QuantizerConfig

if TYPE_CHECKING:
    from vqnat.inference import Translator

# torch, fairseq and the models load inside the commands that use them: `vqnat --help` starts in a fraction of a
# second.

DATA = typer.Option(..., "--data", "-d", help="Folder written by `vqnat prepare` (or `vqnat distill`).")
INIT = typer.Option(None, help="Start from this model's weights (a trainable bundle or a checkpoint; fresh optimizer). "
                               "The architecture options must match it. Ignored when --save-dir already holds "
                               "checkpoint_last.pt, which is resumed.")
# NAT decoding options shared by translate and evaluate.
COLLAPSE_REPEATS = typer.Option(None, "--collapse-repeats/--no-collapse-repeats",
                                help="NAT: drop consecutive repeated tokens (default: the model's setting).")
LATENT_BEAM = typer.Option(1, min=1, help="NAT: beam search over the latents (1 = greedy).")
RESCORE_WITH = typer.Option(None, help="NAT: teacher checkpoint that picks the best of the --latent-beam "
                                       "candidates (noisy parallel decoding).")
LENGTH_RATIO = typer.Option(None, min=0.0, help="NAT: decode ratio * source length (+ offset) positions instead "
                                                 "of the trained rule.")
LENGTH_OFFSET = typer.Option(None, min=0, help="NAT: extra positions (with --length-ratio, or the length "
                                               "predictor's).")
REFINE_STEPS = typer.Option(0, min=0, help="NAT: refinement passes (the output through the autoencoder and the "
                                           "decoder again; needs a checkpoint or bundle with the autoencoder).")
THREADS = typer.Option(None, min=1, help="torch threads (default: torch's own, one per core).")

# Training defaults are the library's (TrainBudget, the presets' argument defaults, QuantizerConfig): read, not
# repeated.
BUDGET = TrainBudget()
TEACHER_DEFAULTS = {k: v.default for k, v in inspect.signature(teacher_train_args).parameters.items()}
NAT_DEFAULTS = {k: v.default for k, v in inspect.signature(nat_train_args).parameters.items()}
MAX_UPDATE = typer.Option(BUDGET.max_update, min=0, help="Stop after this many updates (0 = no limit).")
MAX_TOKENS = typer.Option(BUDGET.max_tokens, min=1, help="Tokens per batch.")
LR = typer.Option(BUDGET.lr, help="Peak learning rate (inverse square root schedule).")
WARMUP = typer.Option(BUDGET.warmup_updates, min=0, help="Warm-up updates.")
SEED = typer.Option(BUDGET.seed, help="Random seed.")


def _budget(max_epoch: int, max_update: int, max_tokens: int, lr: float, warmup: int, seed: int) -> TrainBudget:
    return TrainBudget(max_epoch=max_epoch, max_update=max_update, max_tokens=max_tokens, lr=lr,
                       warmup_updates=warmup, seed=seed)


@friendly_errors
def train_teacher(
    ctx: typer.Context,
    data: Path = DATA,
    save_dir: Path = SAVE_DIR,
    size: str = typer.Option(TEACHER_DEFAULTS["size"], help=f"Teacher size: {', '.join(TEACHER_SIZES)}."),
    max_epoch: int = typer.Option(BUDGET.max_epoch, min=0, help="Epochs (0 = no limit; on the Bible corpus 8 epochs "
                                  "took ~50 min on 2 cores)."),
    max_update: int = MAX_UPDATE,
    max_tokens: int = MAX_TOKENS,
    lr: float = LR,
    warmup: int = WARMUP,
    seed: int = SEED,
    device: str = DEVICE,
    init: Path | None = INIT,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Train the autoregressive Transformer teacher with fairseq-train.

    Extra options after the known ones go to fairseq-train unchanged.

    The terminal shows regular progress lines; fairseq's whole output goes to SAVE_DIR/train.log. Ctrl-C (or a
    kill of vqnat) stops the trainer too, and the same command resumes. Of the interval checkpoints
    (--save-interval-updates N) only the newest few are kept (--keep-interval-updates K sets how many).

    Example: vqnat train teacher --data work/bible --save-dir work/teacher --max-epoch 8
    """
    folder = open_prepared(data)
    args = teacher_train_args(folder.data_bin, save_dir, size, _budget(max_epoch, max_update, max_tokens, lr,
                                                                       warmup, seed), cpu=check_device(device))
    mark_own_save_dir(save_dir)  # its checkpoints load without --trust-checkpoint
    if init is not None:
        args += ["--finetune-from-model", str(training_init(init, save_dir, trust=trust_checkpoint))]
    run_training(args + ctx.args, save_dir)
    typer.echo(f"teacher checkpoints in {save_dir} (checkpoint_best.pt, checkpoint_last.pt)")


@friendly_errors
def train_nat(
    ctx: typer.Context,
    data: Path = DATA,
    save_dir: Path = SAVE_DIR,
    arch: str = typer.Option(NAT_DEFAULTS["arch"], help=f"Size preset: {', '.join(NAT_ARCHS)}."),
    bottleneck: str = typer.Option(NAT_DEFAULTS["bottleneck"], help="soft (soft EM, the paper's) or hard (EMA "
                                                                      "k-means baseline)."),
    num_samples: int = typer.Option(QuantizerConfig.num_samples, min=1, help="Soft-EM samples per latent (m)."),
    codebook_size: int = typer.Option(0, min=0, help="Codes K (0 = the preset's; the paper uses 4096)."),
    prior_warmup: int = typer.Option(0, min=0, help="Updates before the latent prior's loss is switched on."),
    length_rule: str = typer.Option(NAT_DEFAULTS["length_rule"], help="Target length: predictor (a length "
                                    "classifier + 2 positions; measured better) or ratio (the reference's ratio * "
                                    "source length; see --length-ratio)."),
    max_epoch: int = typer.Option(BUDGET.max_epoch, min=0, help="Epochs (0 = no limit)."),
    max_update: int = MAX_UPDATE,
    max_tokens: int = MAX_TOKENS,
    lr: float = LR,
    warmup: int = WARMUP,
    seed: int = SEED,
    device: str = DEVICE,
    init: Path | None = INIT,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Train the latent transformer (non-autoregressive, VQ latents) with fairseq-train.

    Train it on distilled data (`vqnat distill`) for the best BLEU. Extra options go to fairseq-train, e.g.
    `--codebook-decay 0.99 --codebook-slices 2 --length-loss-weight 0.2` (with `--length-rule ratio`:
    `--length-ratio 1.5`).

    The terminal shows regular progress lines; fairseq's whole output goes to SAVE_DIR/train.log. Ctrl-C (or a
    kill of vqnat) stops the trainer too, and the same command resumes. Of the interval checkpoints
    (--save-interval-updates N) only the newest few are kept (--keep-interval-updates K sets how many).

    Example: vqnat train nat --data work/bible-distilled --save-dir work/nat-soft --bottleneck soft
    """
    folder = open_prepared(data)
    extra = ["--num-samples", str(num_samples), "--prior-warmup-updates", str(prior_warmup)]
    if codebook_size:
        extra += ["--codebook-size", str(codebook_size)]
    args = nat_train_args(folder.data_bin, save_dir, arch, bottleneck,
                          _budget(max_epoch, max_update, max_tokens, lr, warmup, seed), extra=extra,
                          cpu=check_device(device), length_rule=length_rule)
    mark_own_save_dir(save_dir)  # its checkpoints load without --trust-checkpoint
    if init is not None:
        args += ["--finetune-from-model", str(training_init(init, save_dir, trust=trust_checkpoint))]
    run_training(args + ctx.args, save_dir)
    typer.echo(f"latent transformer checkpoints in {save_dir} (checkpoint_best.pt, checkpoint_last.pt)")


@friendly_errors
def distill(
    teacher: Path | None = model_option("teacher", "--teacher", "-t"),
    data: Path = DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the distilled corpus (a prepared folder)."),
    beam: int = typer.Option(4, min=1, help="Teacher beam size."),
    max_tokens: int = typer.Option(8192, help="Tokens per decoding batch."),
    device: str = DEVICE,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
    force: bool = typer.Option(False, "--force", help="Redo even if the folder is already distilled."),
) -> None:
    """Sequence-level knowledge distillation: the teacher beam-decodes the training source; its outputs become
    the targets of a new prepared folder (valid/test keep the real references). Reports the teacher's valid BLEU.

    Example: vqnat distill --teacher work/teacher/checkpoint_best.pt --data work/bible --out work/bible-distilled
    """
    from vqnat.pipeline.distill import distill as distill_corpus

    report = distill_corpus(teacher or default_model("teacher"), data, out, beam=beam, max_tokens=max_tokens,
                            cpu=check_device(device), trust_checkpoint=trust_checkpoint,
                            force=force)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@friendly_errors
def translate(
    model: Path | None = model_option("nat", "--model", "-m"),
    data_dir: Path | None = typer.Option(None, help="data-bin with the dictionaries, or the `vqnat prepare` "
                                                     "folder that holds it (default: the one recorded in the "
                                                     "checkpoint)."),
    input: str = typer.Option("-", "--input", "-i", metavar="FILE", help="Text file, one sentence per line "
                                                                         "(UTF-8); - for stdin."),
    output: str = typer.Option("-", "--output", "-o", metavar="FILE",
                               help="Output file, one translation per input line; - for stdout. Translations go "
                                    "to FILE.partial as they are done: a rerun of an interrupted command "
                                    "continues there."),
    batch_size: int = typer.Option(64, min=1, help="Sentences per model call."),
    beam: int | None = typer.Option(None, min=1, help="Beam size (teacher only; default 1 = greedy)."),
    collapse_repeats: bool | None = COLLAPSE_REPEATS,
    latent_beam: int = LATENT_BEAM,
    rescore_with: Path | None = RESCORE_WITH,
    length_ratio: float | None = LENGTH_RATIO,
    length_offset: int | None = LENGTH_OFFSET,
    refine_steps: int = REFINE_STEPS,
    device: str = DEVICE,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
    threads: int | None = THREADS,
    progress: bool | None = typer.Option(None, "--progress/--no-progress", show_default=False,
                                         help="A progress bar on stderr (default: only when it is a terminal)."),
) -> None:
    """Translate text, one sentence per line, with a NAT or an autoregressive checkpoint.

    Example (the shipped NAT): echo "In the beginning was the Word." | vqnat translate

    Example: vqnat translate --model work/nat-soft/checkpoint_best.pt -i in.en -o out.de

    Noisy parallel decoding: --latent-beam 4 --rescore-with work/teacher/checkpoint_best.pt

    Every input line gives one output line, in order (lines end at \\n only). Results are written every
    few batches, so an interrupted run keeps what it translated.
    """
    from vqnat.inference import DecodingOptions, Translator

    check_device(device)
    _set_threads(threads)
    model = model or default_model("nat")
    data = _read_input(input)
    lines = split_lines(data, "stdin" if input == "-" else input)
    settings = {k: v for k, v in dict(beam=beam, collapse_repeated_tokens=collapse_repeats, latent_beam=latent_beam,
                                      length_ratio=length_ratio, length_offset=length_offset,
                                      refine_steps=refine_steps or None).items()
                if v is not None}
    out = None
    if output != "-":
        out = ResumableOutput(Path(output), run_key(data, model=_file_identity(model), data_dir=data_dir,
                                                    rescore_with=_file_identity(rescore_with), **settings))
        out.check_writable()  # before the model loads: a wrong -o costs nothing
    options = DecodingOptions(**settings)
    translator = Translator.load(model, data_dir=data_dir, device=device, options=options, rescorer=rescore_with,
                                 trust_checkpoint=trust_checkpoint)
    _check_fits_model(translator, beam, length_offset)
    done, notice = out.open() if out is not None else (0, None)
    if notice:
        typer.echo(notice, err=True)
    write = out.write if out is not None else _write_stdout
    try:
        _translate_in_chunks(translator, lines, done, batch_size, write, progress)
    except KeyboardInterrupt:
        where = f": {out.partial} keeps the finished lines; rerun the same command to continue" if out else ""
        typer.secho(f"Error: interrupted{where}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=130) from None
    finally:
        if out is not None:
            out.close()
    if out is not None:
        out.finish()


# Sentences per chunk = batch size * this: a chunk is sorted by length into batches, then written in input order.
CHUNK_BATCHES = 8


def _translate_in_chunks(translator: Translator, lines: list[str], done: int, batch_size: int,
                         write: Callable[[list[str]], None], progress: bool | None) -> None:
    """Translate ``lines[done:]`` a chunk at a time, writing each chunk as soon as it is translated."""
    from tqdm import tqdm

    chunk = batch_size * CHUNK_BATCHES
    with tqdm(total=len(lines), initial=done, desc="translating", unit=" sent", dynamic_ncols=True,
              disable=None if progress is None else not progress) as bar:
        for start in range(done, len(lines), chunk):
            part = lines[start:start + chunk]
            write(translator.translate(part, batch_size=batch_size))
            bar.update(len(part))


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _check_fits_model(translator: Translator, beam: int | None, length_offset: int | None) -> None:
    """Refuse decoding options that the loaded model would ignore or cannot honour."""
    if translator.kind != "nat":
        return
    if beam is not None:
        raise ValueError("--beam applies to an autoregressive model (the teacher); a NAT searches its latents "
                         "with --latent-beam")
    longest = translator.model.max_positions()[1]
    if length_offset is not None and length_offset >= longest:
        raise ValueError(f"--length-offset {length_offset} asks for more positions than the model has "
                         f"(max_target_positions {longest})")


def _write_stdout(lines: list[str]) -> None:
    sys.stdout.write("".join(one_line(line) + "\n" for line in lines))
    sys.stdout.flush()


def _read_input(input: str) -> bytes:
    """The bytes of ``input`` (a file, or - for stdin)."""
    if input == "-":
        return sys.stdin.buffer.read()
    path = Path(input)
    if path.is_dir():
        raise ValueError(f"--input {input} is a folder: name a text file")
    if not path.is_file():
        raise ValueError(f"input file not found: {input}")
    return path.read_bytes()


def _file_identity(path: Path | None) -> str:
    """A path with its size and modification time: a retrained checkpoint does not continue an old output."""
    if path is not None and Path(path, "model.safetensors").is_file():  # a bundle: its weights identify it
        path = Path(path, "model.safetensors")
    if path is None or not Path(path).is_file():
        return str(path)
    stat = Path(path).stat()
    return f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


@friendly_errors
def evaluate_translation(
    model: Path | None = model_option("nat", "--model", "-m"),
    data: Path = DATA,
    split: str = typer.Option("test", help="valid or test."),
    beam: int = typer.Option(1, min=1, help="Beam size (teacher only)."),
    batch_size: int = typer.Option(64, min=1, help="Sentences per model call."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result here."),
    collapse_repeats: bool | None = COLLAPSE_REPEATS,
    latent_beam: int = LATENT_BEAM,
    rescore_with: Path | None = RESCORE_WITH,
    length_ratio: float | None = LENGTH_RATIO,
    length_offset: int | None = LENGTH_OFFSET,
    refine_steps: int = REFINE_STEPS,
    device: str = DEVICE,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
    threads: int | None = THREADS,
) -> None:
    """sacreBLEU and chrF (with signatures) of a checkpoint on a prepared split.

    Example: vqnat evaluate translation --model work/teacher/checkpoint_best.pt --data work/bible --beam 4
    """
    from vqnat.inference import DecodingOptions
    from vqnat.pipeline.evaluate import evaluate_checkpoint

    _set_threads(threads)
    check_device(device)
    options = DecodingOptions(beam=beam, latent_beam=latent_beam, length_ratio=length_ratio,
                              length_offset=length_offset, collapse_repeated_tokens=collapse_repeats,
                              refine_steps=refine_steps)
    result = evaluate_checkpoint(model or default_model("nat"), data, split=split, batch_size=batch_size,
                                 options=options, device=device, trust_checkpoint=trust_checkpoint,
                                 rescorer=rescore_with)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    typer.echo(text)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n", encoding="utf-8")


@friendly_errors
def bench(
    nat: Path | None = model_option("nat", "--nat"),
    teacher: Path | None = model_option("teacher", "--teacher"),
    data: Path | None = typer.Option(None, "--data", "-d", help="Prepared folder to take --split from (default: "
                                                                "John / Mark straight from the Bible package)."),
    hard_nat: Path | None = typer.Option(None, help="Optional hard-EM latent transformer, timed too."),
    deep_shallow: Path | None = typer.Option(None, help="Optional deep-encoder/shallow-decoder AR baseline."),
    npd: int = typer.Option(0, min=0, help="Also time noisy parallel decoding: the teacher rescores this many "
                                           "latent-beam candidates of the NAT (0 = off)."),
    extra_nat: list[str] = typer.Option([], help="More NAT rows, NAME=CHECKPOINT (repeatable), e.g. another "
                                                 "length rule."),
    split: str = typer.Option("test", help="Split to translate: test (John) or valid (Mark)."),
    int8: bool = typer.Option(False, "--int8", help="Also time the NAT and teacher greedy with int8 Linear layers."),
    limit: int = typer.Option(0, min=0, help="Use only the first N sentences (0 = all)."),
    large_batch: int = typer.Option(128, min=1, help="Sentences per call in the large-batch run."),
    threads: int = typer.Option(2, min=1, help="torch threads for every system."),
    out: Path = typer.Option(Path("results/bench_translation.json"), help="JSON report."),
    plot: Path = typer.Option(Path("results/bench_translation.png"), help="PNG plot."),
    device: str = DEVICE,
    trust_checkpoint: bool = TRUST_CHECKPOINT,
) -> None:
    """Latency comparison against the autoregressive teacher: NAT vs teacher greedy vs teacher beam 4, batch 1
    and a large batch, in one process on the same sentences; BLEU of each; speedups vs greedy.

    Example (the shipped models on John): vqnat bench --int8

    Example: vqnat bench --nat work/nat-soft/checkpoint_best.pt --teacher work/teacher/checkpoint_best.pt
    --data work/bible-distilled
    """
    from vqnat.inference import DecodingOptions
    from vqnat.pipeline.bench import System, bench_sentences, format_table, plot_report, run_bench

    nat, teacher = nat or default_model("nat"), teacher or default_model("teacher")
    systems = [System("nat soft" if hard_nat else "nat", nat, DecodingOptions(), kind="nat")]
    if npd:
        systems.append(System(f"{systems[0].name} + NPD {npd}", nat, DecodingOptions(latent_beam=npd), teacher,
                              kind="nat"))
    if hard_nat:
        systems.append(System("nat hard", hard_nat, DecodingOptions(), kind="nat"))
    for item in extra_nat:
        name, _, path = item.partition("=")
        if not name or not path:
            raise ValueError(f"--extra-nat takes NAME=CHECKPOINT, got {item!r}")
        systems.append(System(name, Path(path), DecodingOptions(), kind="nat"))
    systems += [System("teacher greedy", teacher, DecodingOptions(beam=1), kind="autoregressive"),
                System("teacher beam 4", teacher, DecodingOptions(beam=4), kind="autoregressive")]
    if int8:
        systems += [System("nat int8", nat, DecodingOptions(), int8=True, kind="nat"),
                    System("teacher greedy int8", teacher, DecodingOptions(beam=1), int8=True,
                           kind="autoregressive")]
    if deep_shallow:
        systems.append(System("deep-shallow greedy", deep_shallow, DecodingOptions(beam=1), kind="autoregressive"))
    check_device(device)
    say = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    if data is not None:
        report = run_bench(systems, data, split=split, limit=limit or None, large_batch=large_batch, threads=threads,
                           progress=say, device=device, trust_checkpoint=trust_checkpoint)
    else:
        sources, references = held_out_text(split)
        report = bench_sentences(systems, sources[: limit or None], references[: limit or None], split=split,
                                 large_batch=large_batch, threads=threads, progress=say, device=device,
                                 trust_checkpoint=trust_checkpoint)
    typer.echo(format_table(report))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_report(report, plot)
    typer.echo(f"wrote {out} and {plot}")
