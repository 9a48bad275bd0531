#!/usr/bin/env python3
"""WMT14 English -> German at the paper's scale (Roy et al. 2018, arXiv 1805.11063), stage by stage through `vqnat`.

Stages, in this order (``--stages`` picks some; a stage whose output exists is skipped unless ``--force``):

  prepare   vqnat prepare files         your WMT14 text -> joint sentencepiece (32k) -> data-bin   WORK/prepared
  teacher   vqnat train teacher         Transformer big (Vaswani et al. 2017), fp16, N GPUs          WORK/teacher
  distill   vqnat distill               teacher beam 4 over the training source, fp16 (Kim & Rush 2016)  WORK/distilled
  nat-soft  vqnat train nat             latent transformer base, soft EM: K = 2^12, nc = 3, m = 10, AMP  WORK/nat_soft
  nat-hard  vqnat train nat             the same with hard EM (the VQ-VAE baseline)                  WORK/nat_hard
  evaluate  vqnat translate, vqnat evaluate bleu
                                        newstest2014, teacher and NATs: sacreBLEU against the official
                                        references, and tensor2tensor's tokenized BLEU               WORK/results
  bench     vqnat bench                 latency of the NATs vs the teacher (on --device)   WORK/results

    python recipes/wmt14_en_de/run.py --corpus ~/wmt14_en_de --gpus 8 --dry-run   # print the commands
    python recipes/wmt14_en_de/run.py --corpus ~/wmt14_en_de --gpus 8             # run them

``--corpus DIR`` holds train.{en,de} (WMT14 training data), valid.{en,de} (newstest2013) and test.{en,de}
(newstest2014), plain text, one sentence per line; ``--train-src`` etc. name files one by one. Training commands
get fairseq's torch.distributed options from ``--gpus`` (and ``--nodes``/``--node-rank``/``--master``) and an
``--update-freq`` that keeps the effective batch of the reference setup (8 GPUs) on fewer GPUs. The script needs
only the standard library; it runs `vqnat` (next to this Python, else on PATH, else ``--vqnat``) as argument
lists, stops at the first failing command with a one-line message, and appends one JSON line per command
(command, seconds, exit code) to WORK/timeline.jsonl. On GPUs the commands run with TF32 matmuls
(``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1``; ``--no-tf32`` turns it off). See README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vqnat.quantization.config import QuantizerConfig

SRC, TGT = "en", "de"
STAGES = ("prepare", "teacher", "distill", "nat-soft", "nat-hard", "evaluate", "bench")
TRAINING_STAGES = ("teacher", "nat-soft", "nat-hard")
REFERENCE_GPUS = 8  # the effective batch below is 8 GPUs' worth, as in the papers' setups

# Teacher: Transformer big for WMT14 En-De (Vaswani et al. 2017, table 3: 6+6 layers, d 1024, ffn 4096, 16 heads,
# dropout 0.3, 300k steps, Noam schedule with 4000 warm-up steps, whose peak for d = 1024 is 1024^-0.5 * 4000^-0.5
# = 4.9e-4); per-GPU batch and fp16 as in fairseq's WMT recipe (Ott et al. 2018: --max-tokens 3584, --fp16).
TEACHER_SIZE = "big"
TEACHER_UPDATES = 300_000
TEACHER_MAX_TOKENS = 3584
TEACHER_LR = "5e-4"
TEACHER_DROPOUT = "0.3"
WARMUP_UPDATES = 4000
DISTILL_BEAM = 4

# Latent transformer: Roy et al. 2018 and tensor2tensor's transformer_nat_base (tensor2tensor/models/research/
# transformer_nat.py): bottleneck_bits 12, num_compress_steps 3, beta 0.25, epsilon 1e-5, decay 0.999,
# num_samples 10, mask_startup_steps 50000 (decoder fed gold targets with a probability decaying to 0, and the
# latent-prediction loss switched on, after 50k steps), target length 2 x source, label_smoothing 0.0,
# batch_size 2048 tokens per GPU, hidden 512, filter 4096, 6 layers (the latent predictor is a 6-layer decoder).
# Optimizer (transformer_nat_small, inherited by _base): Adam beta1 0.9, beta2 0.997, eps 1e-9, 4000 warm-up steps,
# and transformer_base_v3's schedule "constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size" with constant 2.0:
# lr(step) = 2.0 * 512^-0.5 * min(step / 4000, 1) * max(step, 4000)^-0.5, which is fairseq's inverse_sqrt
# schedule with peak 2.0 * 512^-0.5 * 4000^-0.5 = 1.398e-3 after 4000 linear warm-up updates.
NAT_ARCH = "vqnat_lt_base"
NAT_DIM = 512
T2T_LR_CONSTANT = 2.0
CODEBOOK_SIZE = 4096  # 2^12
COMPRESS_STEPS = 3  # nc: latents are 2^3 = 8 times shorter than the (padded) target
NUM_SAMPLES = QuantizerConfig.num_samples  # m: soft-EM samples per latent; the default is the paper's 10
BETA = "0.25"
CODEBOOK_DECAY = "0.999"
CODEBOOK_EPS = "1e-5"
LENGTH_RATIO = "2.0"
STARTUP_UPDATES = 50_000
PRIOR_LAYERS = 6
NAT_LABEL_SMOOTHING = "0.0"
NAT_MAX_TOKENS = 2048
NAT_UPDATES = 300_000  # our choice: the step count is not one we could confirm from the paper
NAT_LR = f"{T2T_LR_CONSTANT * NAT_DIM ** -0.5 * WARMUP_UPDATES ** -0.5:.4g}"  # 0.001398, see above
NAT_ADAM = ("--adam-betas", "(0.9, 0.997)", "--adam-eps", "1e-9")
SAVE_INTERVAL_UPDATES = 2500  # checkpoint_last.pt every 2500 updates: a preempted job loses little
KEEP_CHECKPOINTS = 5  # the last 5 interval checkpoints stay, for `vqnat average --last 5`
TF32_ENV = {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}  # torch's switch: cuBLAS fp32 matmuls in TF32
DONE = "recipe_done.json"  # run.py writes it into a training's folder when the training command succeeded


class RecipeError(Exception):
    """A mistake in the options or a missing input: reported on one line, exit code 1."""


@dataclass(frozen=True)
class Step:
    """One `vqnat` command of a stage.

    ``output`` exists once the command has succeeded (for trainings run.py writes it, since fairseq leaves no
    "finished" file: an interrupted training resumes from checkpoint_last.pt when run again). ``needs``: (path,
    stage that makes it) pairs that must exist before the command runs, unless an earlier step of the run makes them.
    """

    stage: str
    command: tuple[str, ...]
    output: Path
    needs: tuple[tuple[Path, str], ...] = ()
    marker: bool = False
    log: Path | None = None


@dataclass(frozen=True)
class Layout:
    """Where each stage writes, under the work folder."""

    work: Path

    @property
    def prepared(self) -> Path:
        return self.work / "prepared"

    @property
    def teacher(self) -> Path:
        return self.work / "teacher"

    @property
    def distilled(self) -> Path:
        return self.work / "distilled"

    def nat(self, bottleneck: str) -> Path:
        return self.work / f"nat_{bottleneck}"

    @property
    def results(self) -> Path:
        return self.work / "results"

    @property
    def teacher_checkpoint(self) -> Path:
        return self.teacher / "checkpoint_best.pt"

    @property
    def teacher_done(self) -> Path:
        return self.teacher / DONE

    def nat_checkpoint(self, bottleneck: str) -> Path:
        return self.nat(bottleneck) / "checkpoint_best.pt"

    def nat_done(self, bottleneck: str) -> Path:
        return self.nat(bottleneck) / DONE


def update_freq(batch_tokens: int, max_tokens: int, world_size: int) -> int:
    """Gradient accumulation steps so that ``world_size`` GPUs of ``max_tokens`` reach ``batch_tokens`` an update."""
    if min(batch_tokens, max_tokens, world_size) < 1:
        raise RecipeError("batch tokens, max tokens and GPUs must be positive")
    return max(1, math.ceil(batch_tokens / (max_tokens * world_size)))


def distributed_args(gpus: int, nodes: int = 1, node_rank: int = 0, master: str | None = None) -> list[str]:
    """fairseq-train's torch.distributed options for ``gpus`` GPUs on each of ``nodes`` machines.

    One node: ``--distributed-world-size`` alone (fairseq spawns one process per GPU and finds a free port).
    Several: every node runs the same command with its own first rank; fairseq spawns its local processes and
    they meet at ``tcp://master``.
    """
    args = ["--distributed-world-size", str(gpus * nodes)]
    if nodes > 1:
        if not master:
            raise RecipeError("--nodes > 1 needs --master HOST:PORT (node 0's address, a free port)")
        args += ["--distributed-init-method", f"tcp://{master}", "--distributed-rank", str(node_rank * gpus)]
    return args


def reference_file(args: argparse.Namespace) -> Path:
    """newstest2014's German side exactly as the user gave it: what the evaluate stage scores against."""
    if args.test_tgt is None and args.corpus is None:
        raise RecipeError(f"the evaluate stage needs --corpus DIR (with test.{TGT}) or --test-tgt: the official "
                          "references")
    path = Path(args.test_tgt) if args.test_tgt is not None else args.corpus / f"test.{TGT}"
    if not path.is_file():
        raise RecipeError(f"reference file not found: {path} (--test-tgt)")
    return path


def corpus_files(args: argparse.Namespace) -> dict[str, Path]:
    """The user's six files by option name; ``--corpus DIR`` supplies those not named one by one."""
    files: dict[str, Path] = {}
    for split in ("train", "valid", "test"):
        for side, lang in (("src", SRC), ("tgt", TGT)):
            name = f"{split}_{side}"
            given = getattr(args, name)
            if given is None and args.corpus is None:
                raise RecipeError(f"the prepare stage needs --corpus DIR (with {split}.{lang}) or --{split}-{side}")
            files[name] = Path(given) if given is not None else args.corpus / f"{split}.{lang}"
    for name, path in files.items():
        if not path.is_file():
            raise RecipeError(f"input file not found: {path} (--{name.replace('_', '-')})")
    return files


def _training_options(args: argparse.Namespace, batch_tokens: int, max_tokens: int) -> list[str]:
    """Options every training command passes through to fairseq-train: device-specific ones and checkpointing."""
    checkpoints = ["--save-interval-updates", str(args.save_interval_updates),
                   "--keep-interval-updates", str(KEEP_CHECKPOINTS)]
    if args.device == "cpu":
        return checkpoints
    world = args.gpus * args.nodes
    return ["--update-freq", str(update_freq(batch_tokens, max_tokens, world)),
            *distributed_args(args.gpus, args.nodes, args.node_rank, args.master), *checkpoints]


def plan(args: argparse.Namespace, stages: Sequence[str]) -> list[Step]:
    """The steps of the chosen stages, in order, as `vqnat` argument lists (first element "vqnat")."""
    at = Layout(args.work)
    force = ["--force"] if args.force else []
    device = ["--device", args.device]
    steps: list[Step] = []
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage == "prepare":
            files = corpus_files(args)
            command = ["vqnat", "prepare", "files", "--src-file", str(files["train_src"]),
                       "--tgt-file", str(files["train_tgt"]), "--valid-src-file", str(files["valid_src"]),
                       "--valid-tgt-file", str(files["valid_tgt"]), "--test-src-file", str(files["test_src"]),
                       "--test-tgt-file", str(files["test_tgt"]), "--src-lang", SRC, "--tgt-lang", TGT,
                       "--vocab-size", str(args.vocab_size), "--seed", str(args.seed), "--out", str(at.prepared),
                       # the usual cleaning of the crawled training data (valid/test are never filtered)
                       "--max-len-ratio", "2.5", "--max-words", "250"]
            if args.moses_normalize:
                command.append("--moses-normalize")
            if args.max_train:
                command += ["--max-train", str(args.max_train)]
            if args.prepare_workers:
                command += ["--workers", str(args.prepare_workers)]
            steps.append(Step(stage, tuple(command + force), at.prepared / "prepare.json"))
        elif stage == "teacher":
            command = ["vqnat", "train", "teacher", "--data", str(at.prepared), "--save-dir", str(at.teacher),
                       "--size", args.teacher_size, "--max-epoch", "0", "--max-update", str(args.teacher_updates),
                       "--max-tokens", str(args.teacher_max_tokens), "--lr", TEACHER_LR,
                       "--warmup", str(args.warmup), "--seed", str(args.seed), *device,
                       # the rest goes through to fairseq-train
                       "--dropout", TEACHER_DROPOUT,
                       *(["--fp16"] if args.device == "cuda" and args.fp16 else []),
                       *_training_options(args, args.teacher_batch_tokens, args.teacher_max_tokens),
                       *shlex.split(args.teacher_extra)]
            steps.append(Step(stage, tuple(command), at.teacher_done,
                              needs=((at.prepared / "prepare.json", "prepare"),), marker=True,
                              log=at.teacher / "train.log"))
        elif stage == "distill":
            command = ["vqnat", "distill", "--teacher", str(at.teacher_checkpoint), "--data", str(at.prepared),
                       "--out", str(at.distilled), "--beam", str(args.distill_beam),
                       "--max-tokens", str(args.distill_max_tokens), *device, *force]
            steps.append(Step(stage, tuple(command), at.distilled / "distill.json",
                              needs=((at.prepared / "prepare.json", "prepare"), (at.teacher_done, "teacher"),
                                     (at.teacher_checkpoint, "teacher")),
                              log=at.distilled / "distill.log"))
        elif stage in ("nat-soft", "nat-hard"):
            bottleneck = stage.removeprefix("nat-")
            command = ["vqnat", "train", "nat", "--data", str(at.distilled), "--save-dir", str(at.nat(bottleneck)),
                       "--arch", args.nat_arch, "--bottleneck", bottleneck, "--num-samples", str(NUM_SAMPLES),
                       "--codebook-size", str(args.codebook_size), "--prior-warmup", str(args.startup_updates),
                       "--max-epoch", "0", "--max-update", str(args.nat_updates),
                       "--max-tokens", str(args.nat_max_tokens), "--lr", NAT_LR, "--warmup", str(args.warmup),
                       "--seed", str(args.seed), "--length-rule", "ratio", *device,  # the paper's 2 x source
                       # the rest goes through to fairseq-train (model and criterion options)
                       "--compress-steps", str(COMPRESS_STEPS), "--beta", BETA, "--codebook-decay", CODEBOOK_DECAY,
                       "--codebook-eps", CODEBOOK_EPS, "--length-ratio", LENGTH_RATIO, "--length-offset", "0",
                       "--prior-layers", str(args.prior_layers),
                       "--decoder-gold-mix-updates", str(args.startup_updates),
                       "--label-smoothing", NAT_LABEL_SMOOTHING, *NAT_ADAM,
                       # fairseq's automatic mixed precision: fp16 autocast, fp32 weights; the codebook stays fp32
                       *(["--amp"] if args.device == "cuda" and args.amp else []),
                       *_training_options(args, args.nat_batch_tokens, args.nat_max_tokens),
                       *shlex.split(args.nat_extra)]
            steps.append(Step(stage, tuple(command), at.nat_done(bottleneck),
                              needs=((at.distilled / "distill.json", "distill"),), marker=True,
                              log=at.nat(bottleneck) / "train.log"))
        elif stage == "evaluate":
            reference = reference_file(args)
            systems = [("teacher_beam4", "teacher", 4), ("teacher_greedy", "teacher", 1)]
            systems += [(f"nat_{b}", f"nat-{b}", 1) for b in args.bottlenecks]
            for name, maker, beam in systems:
                checkpoint = at.teacher_checkpoint if maker == "teacher" else at.nat_checkpoint(maker[4:])
                done = at.teacher_done if maker == "teacher" else at.nat_done(maker[4:])
                hypotheses, out = at.results / f"test_{name}.{TGT}", at.results / f"test_{name}.json"
                # the source as prepare cleaned it (and normalized it, as for training)
                command = ["vqnat", "translate", "--model", str(checkpoint), "--data-dir", str(at.prepared),
                           "--input", str(at.prepared / "raw" / f"test.{SRC}"), "--output", str(hypotheses),
                           *(["--beam", str(beam)] if maker == "teacher" else []),  # a NAT decodes in one pass
                           "--batch-size", str(args.eval_batch_size), *device]
                steps.append(Step(stage, tuple(command), hypotheses, needs=(
                    (at.prepared / "prepare.json", "prepare"), (done, maker), (checkpoint, maker))))
                command = ["vqnat", "evaluate", "bleu", "--hyp", str(hypotheses), "--ref", str(reference),
                           "--lang", TGT, "--json", str(out)]
                steps.append(Step(stage, tuple(command), out, needs=((hypotheses, "evaluate"),)))
        elif stage == "bench":
            command = ["vqnat", "bench", "--nat", str(at.nat_checkpoint("soft")),
                       *(["--hard-nat", str(at.nat_checkpoint("hard"))] if "hard" in args.bottlenecks else []),
                       "--teacher", str(at.teacher_checkpoint), "--data", str(at.prepared), "--split", "test",
                       "--limit", str(args.bench_limit), "--large-batch", "128", "--threads", str(args.bench_threads),
                       "--out", str(at.results / "bench.json"), "--plot", str(at.results / "bench.png"), *device]
            needs = [(at.prepared / "prepare.json", "prepare"), (at.teacher_checkpoint, "teacher")]
            needs += [(at.nat_checkpoint(b), f"nat-{b}") for b in args.bottlenecks]
            steps.append(Step(stage, tuple(command), at.results / "bench.json", needs=tuple(needs)))
    return steps


def find_vqnat(given: str | None) -> str | None:
    """The `vqnat` executable: ``--vqnat``, else the one next to this Python, else the first on PATH."""
    if given:
        return given
    beside = Path(sys.executable).with_name("vqnat")
    if beside.is_file():
        return str(beside)
    return shutil.which("vqnat")


def _record(work: Path, entry: dict[str, object]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "timeline.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def environment(args: argparse.Namespace) -> dict[str, str]:
    """What the commands' environment adds to this one: TF32 on GPUs unless ``--no-tf32``."""
    return dict(TF32_ENV) if args.device == "cuda" and args.tf32 else {}


def execute(steps: Sequence[Step], args: argparse.Namespace) -> int:
    """Print (``--dry-run``) or run the steps in order; return the exit code."""
    selected = {step.stage for step in steps}  # stages of this run make what later stages need
    todo: list[tuple[Step, bool, list[str]]] = []
    for step in steps:
        skip = step.output.exists() and not args.force
        missing = [f"{path} (from stage {maker})" for path, maker in step.needs
                   if maker not in selected and not path.exists()]
        if missing and not skip and not args.dry_run:
            raise RecipeError(f"stage {step.stage} needs {missing[0]}: run that stage first (a training resumes "
                              "where it stopped)")
        todo.append((step, skip, missing))
    vqnat = find_vqnat(args.vqnat)
    if args.dry_run:
        print(f"# vqnat = {vqnat or 'not found: install the project or give --vqnat'}; work = {args.work}")
        for name, value in environment(args).items():
            print(f"# environment: {name}={value}")
        for step, skip, missing in todo:
            if skip:
                print(f"# {step.stage}: skipped, {step.output} exists (--force reruns it)")
                continue
            print(f"# {step.stage}" + (f"; not there yet: {', '.join(missing)}" if missing else ""))
            print(shlex.join(step.command))
        return 0
    if vqnat is None:
        raise RecipeError("no `vqnat` executable next to this Python or on PATH: install the project or give --vqnat")
    for step, skip, _ in todo:
        if skip:
            print(f"[run.py] {step.stage}: skipped, {step.output} exists (--force reruns it)", flush=True)
            continue
        print(f"[run.py] {step.stage}: {shlex.join(step.command)}", flush=True)
        if step.marker:
            step.output.unlink(missing_ok=True)
        step.output.parent.mkdir(parents=True, exist_ok=True)  # e.g. results/ for `vqnat translate --output`
        start = time.time()
        try:
            code = subprocess.call([vqnat, *step.command[1:]], env={**os.environ, **environment(args)})
        except OSError as err:
            raise RecipeError(f"cannot run {vqnat}: {err}") from None
        seconds = round(time.time() - start, 1)
        _record(args.work, {"stage": step.stage, "command": list(step.command), "start": round(start, 1),
                            "seconds": seconds, "exit": code})
        if code != 0:
            where = f"; log: {step.log}" if step.log else ""
            print(f"run.py: stage {step.stage} failed (exit {code}) after {seconds} s{where}", file=sys.stderr)
            return 1
        if step.marker:
            step.output.parent.mkdir(parents=True, exist_ok=True)
            step.output.write_text(json.dumps({"command": list(step.command), "seconds": seconds}, indent=1) + "\n",
                                   encoding="utf-8")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    files = parser.add_argument_group("your WMT14 files (plain text, one sentence per line, line-aligned)")
    files.add_argument("--corpus", type=Path, help="folder with train.en/.de, valid.en/.de (newstest2013) and "
                       "test.en/.de (newstest2014)")
    for split, what in (("train", "training"), ("valid", "newstest2013"), ("test", "newstest2014")):
        files.add_argument(f"--{split}-src", type=Path, help=f"{what} English (default: CORPUS/{split}.{SRC})")
        files.add_argument(f"--{split}-tgt", type=Path, help=f"{what} German (default: CORPUS/{split}.{TGT})")
    parser.add_argument("--work", type=Path, default=Path("work/wmt14_en_de"), help="where every stage writes")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated, run in the canonical order: {','.join(STAGES)} (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--force", action="store_true", help="rerun stages whose output exists (trainings resume "
                        "from checkpoint_last.pt: delete the folder to start one over)")
    parser.add_argument("--no-hard", dest="bottlenecks", action="store_const", const=("soft",),
                        default=("soft", "hard"), help="leave out the hard-EM baseline (stage, evaluation, bench)")
    parser.add_argument("--vqnat", help="the vqnat executable (default: next to this Python, else on PATH)")
    gpu = parser.add_argument_group("devices (training stages; distill and evaluate use one GPU)")
    gpu.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                     help="cpu only for a smoke test on a small --max-train sample")
    gpu.add_argument("--gpus", type=int, default=1, help="GPUs per node for training (--distributed-world-size)")
    gpu.add_argument("--nodes", type=int, default=1, help="machines training together")
    gpu.add_argument("--node-rank", type=int, default=0, help="this machine's index, 0 .. NODES-1")
    gpu.add_argument("--master", help="HOST:PORT of node 0 (with --nodes > 1)")
    gpu.add_argument("--no-fp16", dest="fp16", action="store_false", help="train the teacher in fp32")
    gpu.add_argument("--no-amp", dest="amp", action="store_false", help="train the NATs in fp32 (default: "
                     "fairseq's --amp, fp16 autocast with fp32 weights)")
    gpu.add_argument("--no-tf32", dest="tf32", action="store_false", help="keep fp32 matmuls in fp32 (default: "
                     "TF32 on GPUs)")
    size = parser.add_argument_group("sizes and budgets (defaults: the paper's setting; see README.md)")
    size.add_argument("--vocab-size", type=int, default=32000, help="joint sentencepiece vocabulary")
    size.add_argument("--max-train", type=int, default=0, help="keep the first N training pairs (0 = all)")
    size.add_argument("--no-moses-normalize", dest="moses_normalize", action="store_false",
                      help="skip sacremoses' punctuation normalization (applied to every split by default)")
    size.add_argument("--prepare-workers", type=int, default=0, help="workers of `vqnat prepare` (0 = its default)")
    size.add_argument("--teacher-size", default=TEACHER_SIZE, help="teacher preset (vqnat/pipeline/presets.py)")
    size.add_argument("--teacher-updates", type=int, default=TEACHER_UPDATES)
    size.add_argument("--teacher-max-tokens", type=int, default=TEACHER_MAX_TOKENS, help="tokens per GPU per step")
    size.add_argument("--teacher-batch-tokens", type=int, default=REFERENCE_GPUS * TEACHER_MAX_TOKENS,
                      help="tokens per update, all GPUs and --update-freq together")
    size.add_argument("--teacher-extra", default="",
                      help="more fairseq-train options, e.g. --teacher-extra='--clip-norm 1.0'")
    size.add_argument("--distill-max-tokens", type=int, default=8192, help="tokens per beam-search batch")
    size.add_argument("--distill-beam", type=int, default=DISTILL_BEAM, help="the teacher's beam in distill")
    size.add_argument("--nat-arch", default=NAT_ARCH, help="latent transformer preset")
    size.add_argument("--codebook-size", type=int, default=CODEBOOK_SIZE, help="K, codes of the NATs' codebook")
    size.add_argument("--prior-layers", type=int, default=PRIOR_LAYERS, help="layers of the NATs' latent prior")
    size.add_argument("--nat-updates", type=int, default=NAT_UPDATES)
    size.add_argument("--nat-max-tokens", type=int, default=NAT_MAX_TOKENS, help="tokens per GPU per step")
    size.add_argument("--nat-batch-tokens", type=int, default=REFERENCE_GPUS * NAT_MAX_TOKENS,
                      help="tokens per update, all GPUs and --update-freq together")
    size.add_argument("--startup-updates", type=int, default=STARTUP_UPDATES,
                      help="prior loss off and decoder gold-target mixing for this many updates")
    size.add_argument("--nat-extra", default="", help="more fairseq-train options for both NATs")
    size.add_argument("--warmup", type=int, default=WARMUP_UPDATES, help="learning-rate warm-up updates")
    size.add_argument("--save-interval-updates", type=int, default=SAVE_INTERVAL_UPDATES)
    size.add_argument("--seed", type=int, default=1)
    size.add_argument("--eval-batch-size", type=int, default=64, help="sentences per call in evaluate")
    size.add_argument("--bench-limit", type=int, default=500, help="test sentences the CPU bench times")
    size.add_argument("--bench-threads", type=int, default=8, help="torch threads of the CPU bench")
    args = parser.parse_args(argv)
    if args.gpus < 1 or args.nodes < 1:
        parser.error("--gpus and --nodes must be at least 1")
    if not 0 <= args.node_rank < args.nodes:
        parser.error(f"--node-rank must be in 0..{args.nodes - 1}")
    return args


def chosen_stages(args: argparse.Namespace) -> list[str]:
    """``--stages`` as a list in canonical order; nat-hard (and its use) dropped with ``--no-hard``."""
    names = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown or not names:
        raise RecipeError(f"unknown stage {unknown[0] if unknown else '(none)'}: choose from {','.join(STAGES)}")
    if "hard" not in args.bottlenecks:
        names = [s for s in names if s != "nat-hard"]
    if args.node_rank > 0 and any(s not in TRAINING_STAGES for s in names):
        raise RecipeError("nodes other than 0 run only the training stages: give --stages teacher (or nat-soft, "
                          "nat-hard) on them")
    return [s for s in STAGES if s in names]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return execute(plan(args, chosen_stages(args)), args)
    except RecipeError as err:
        print(f"run.py: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
