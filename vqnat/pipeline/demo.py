"""The main job on the embedded default data.

``run_demo``: the shipped models (``models/``) translate a few John verses, are scored on all of John, and are timed
against each other (NAT vs teacher greedy and beam 4, batch 1 and batches of 128): about a minute on 2 CPU cores.

``run_training_demo`` (``vqnat demo --train``): the Bible recipe end to end on a subset, reduced to fit a 2-core CPU in
about 10 minutes: prepare (a few thousand verses) -> teacher (time-limited) -> distill -> latent transformer
(time-limited) -> a few real translations -> latency table against the teacher. Those models are far too small and
briefly trained for good BLEU; the point is that every stage runs on real data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vqnat.checkpoint import default_model, mark_own_save_dir
from vqnat.data.bible import held_out_text
from vqnat.data.prepare import prepare_bible
from vqnat.inference import DecodingOptions, Translator
from vqnat.pipeline.bench import System, bench_sentences, format_table, plot_report, run_bench
from vqnat.pipeline.distill import distill
from vqnat.pipeline.fairseq_run import run_fairseq
from vqnat.pipeline.prepared import open_prepared
from vqnat.pipeline.presets import TrainBudget, nat_train_args, teacher_train_args

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShippedDemoConfig:
    """``examples``: verses shown with their translations; ``batch1_sentences``: verses timed one by one; ``limit``:
    the first this many John verses are scored and timed in batches (None: all 879); ``threads``: torch threads."""

    examples: int = 3
    limit: int | None = None
    batch1_sentences: int = 40
    large_batch: int = 128
    threads: int = 2
    plot: Path = Path("work/demo/bench.png")


def run_demo(cfg: ShippedDemoConfig = ShippedDemoConfig(), nat: Path | None = None, teacher: Path | None = None,
             say: Callable[[str], None] = print) -> dict[str, object]:
    """Translate, score and time the shipped NAT against the shipped teacher on John; returns the bench report."""
    nat, teacher = nat or default_model("nat"), teacher or default_model("teacher")
    for name in ("fairseq", "fairseq.tasks.translation"):  # dictionary sizes at every load: noise here
        logging.getLogger(name).setLevel(logging.WARNING)
    sources, references = held_out_text("test")
    sources, references = sources[: cfg.limit], references[: cfg.limit]
    say(f"NAT: {nat}\nteacher: {teacher}\n")
    systems = [System("nat", nat, DecodingOptions()), System("teacher greedy", teacher, DecodingOptions(beam=1)),
               System("teacher beam 4", teacher, DecodingOptions(beam=4))]
    say(f"translating, scoring and timing on the Gospel of John ({len(sources)} verses; batch 1 on the first "
        f"{cfg.batch1_sentences})")
    report = bench_sentences(systems, sources, references, large_batch=cfg.large_batch, threads=cfg.threads,
                             batch1=cfg.batch1_sentences, repeats=1, examples=cfg.examples, progress=say)
    for i in range(cfg.examples):
        say(f"\n  EN       {sources[i]}\n  REF      {references[i]}")
        for name in ("nat", "teacher greedy"):
            say(f"  {name:<8} {report['systems'][name]['examples'][i]}")
    say("\n" + format_table(report))
    cfg.plot.parent.mkdir(parents=True, exist_ok=True)
    plot_report(report, cfg.plot)
    say(f"\nBLEU/chrF: sacreBLEU on all {len(sources)} John verses ({report['bleu_signature']}); plot: {cfg.plot}")
    return report


@dataclass(frozen=True)
class TrainingDemoConfig:
    work_dir: Path = Path("work/demo-train")
    train_verses: int = 3000
    vocab_size: int = 2000
    teacher_minutes: float = 5.0
    nat_minutes: float = 3.0
    # Greedy distillation: a teacher trained for minutes still loops to the length limit on many verses, and
    # beam 4 then cost 13 minutes for 4,000 verses on a shared 2-core machine.
    distill_beam: int = 1
    bench_sentences: int = 100
    seed: int = 1


def run_training_demo(cfg: TrainingDemoConfig, say: Callable[[str], None] = print) -> dict[str, object]:
    """Run every stage (each resumable: finished stages are skipped on a rerun) and return the bench report."""
    work = cfg.work_dir
    say(f"[1/5] prepare: {cfg.train_verses} training verses (WEB -> Elberfelder), test = John")
    prepared = prepare_bible(work / "data", max_train=cfg.train_verses, max_valid=200, vocab_size=cfg.vocab_size,
                             seed=cfg.seed)
    budget = TrainBudget(max_epoch=1000, max_tokens=4096, lr=1e-3, warmup_updates=200, seed=cfg.seed)
    teacher = work / "teacher" / "checkpoint_last.pt"
    if not teacher.is_file():
        say(f"[2/5] teacher: fairseq transformer 3+3 layers x 256 for {cfg.teacher_minutes} minutes")
        args = teacher_train_args(prepared.data_bin, work / "teacher", "cpu", budget)
        mark_own_save_dir(work / "teacher")
        run_fairseq("train", args + ["--stop-time-hours", f"{cfg.teacher_minutes / 60:.4f}"],
                    log_path=_log(work, "teacher"))
    say(f"[3/5] distill: the teacher decodes the training source (beam {cfg.distill_beam})")
    distill(teacher, prepared.root, work / "distilled", beam=cfg.distill_beam, validate=False)
    nat = work / "nat" / "checkpoint_last.pt"
    if not nat.is_file():
        say(f"[4/5] latent transformer (soft EM) for {cfg.nat_minutes} minutes")
        args = nat_train_args(open_prepared(work / "distilled").data_bin, work / "nat", "vqnat_lt_cpu", "soft",
                              budget)
        mark_own_save_dir(work / "nat")
        run_fairseq("train", args + ["--stop-time-hours", f"{cfg.nat_minutes / 60:.4f}"], log_path=_log(work, "nat"))
    folder = open_prepared(work / "distilled")
    sources, references = folder.read_raw("test", "src")[:3], folder.read_raw("test", "tgt")[:3]
    outputs = Translator.load(nat, data_dir=folder.data_bin).translate(sources)
    for src, ref, hyp in zip(sources, references, outputs, strict=True):
        say(f"  EN  {src}\n  REF {ref}\n  NAT {hyp}\n")
    say(f"[5/5] latency vs the teacher on {cfg.bench_sentences} John verses")
    report = run_bench([System("nat", nat, DecodingOptions()), System("teacher greedy", teacher, DecodingOptions()),
                        System("teacher beam 4", teacher, DecodingOptions(beam=4))],
                       folder.root, limit=cfg.bench_sentences)
    say(format_table(report))
    plot_report(report, work / "bench.png")
    say(f"plot: {work / 'bench.png'}")
    return report


def _log(work: Path, name: str) -> Path:
    (work / name).mkdir(parents=True, exist_ok=True)
    return work / name / "train.log"
