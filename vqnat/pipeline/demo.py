"""The main job, reduced to fit a 2-core CPU in about 15 minutes: the Bible recipe end to end on a subset.

prepare (a few thousand verses) -> teacher (time-limited) -> distill -> latent transformer (time-limited) ->
a few real translations -> latency table against the teacher. The models are far too small and briefly trained
for good BLEU; the point is that every stage runs on real data and the latency comparison is measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vqnat.data.prepare import prepare_bible
from vqnat.inference import DecodingOptions, Translator
from vqnat.pipeline.bench import System, format_table, plot_report, run_bench
from vqnat.pipeline.distill import distill
from vqnat.pipeline.fairseq_run import run_fairseq
from vqnat.pipeline.prepared import open_prepared
from vqnat.pipeline.presets import TrainBudget, nat_train_args, teacher_train_args

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    work_dir: Path = Path("work/demo")
    train_verses: int = 3000
    vocab_size: int = 2000
    teacher_minutes: float = 5.0
    nat_minutes: float = 3.0
    # Greedy distillation: a teacher trained for minutes still loops to the length limit on many verses, and
    # beam 4 then cost 13 minutes for 4,000 verses on a shared 2-core machine.
    distill_beam: int = 1
    bench_sentences: int = 100
    seed: int = 1


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> dict[str, object]:
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
        run_fairseq("train", args + ["--stop-time-hours", f"{cfg.teacher_minutes / 60:.4f}"],
                    log_path=_log(work, "teacher"))
    say(f"[3/5] distill: the teacher decodes the training source (beam {cfg.distill_beam})")
    distill(teacher, prepared.root, work / "distilled", beam=cfg.distill_beam, validate=False)
    nat = work / "nat" / "checkpoint_last.pt"
    if not nat.is_file():
        say(f"[4/5] latent transformer (soft EM) for {cfg.nat_minutes} minutes")
        args = nat_train_args(open_prepared(work / "distilled").data_bin, work / "nat", "vqnat_lt_cpu", "soft",
                              budget)
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
