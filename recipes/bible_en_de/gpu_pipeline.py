"""The Bible recipe on one GPU within minutes: teacher (+ deep-shallow baseline) -> distill -> NAT variants
(trained in parallel) -> BLEU of each. Uses the library only (no CLI dependencies), so it runs on a bare GPU box
with torch + fairseq.

    python recipes/bible_en_de/gpu_pipeline.py work/bible /tmp/w OUT --teacher-hours 0.02 --nat-hours 0.05 \
        [--device cuda] [--variants soft,hard] [--distilled work/bible-distilled] [--export nat_soft,deep_shallow]

With ``--distilled`` (a folder written by ``vqnat distill``, e.g. on the CPU beforehand) the teacher and the
distillation are skipped: only the deep-shallow baseline (on PREPARED) and the NAT variants train, all at once.
Variants (``NAT_VARIANTS``) differ in the bottleneck and the target-length rule. Every training stops at its time
limit (fairseq --stop-time-hours) and can be resumed by running it again. ``OUT/summary.json`` collects the
timeline, sizes, and sacreBLEU/chrF of every system on the test split; ``--export`` also writes the named
checkpoints as fp16 chunks (:func:`vqnat.checkpoint_tools.pack_checkpoint`; ``export_weights.py unpack`` joins
them) into OUT. The trainings run side by side through :func:`vqnat.pipeline.fairseq_run.run_fairseq_parallel`,
each logging to ``OUT/NAME.log``; ``--print-jobs`` prints their fairseq-train arguments instead.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from vqnat.checkpoint import mark_own_save_dir
from vqnat.checkpoint_tools import DEFAULT_CHUNK_MB, pack_checkpoint
from vqnat.inference import DecodingOptions
from vqnat.pipeline.distill import distill
from vqnat.pipeline.evaluate import evaluate_checkpoint
from vqnat.pipeline.fairseq_run import FairseqError, run_fairseq_parallel
from vqnat.pipeline.prepared import open_prepared
from vqnat.pipeline.presets import TrainBudget, nat_train_args, teacher_train_args

# name -> (bottleneck, extra fairseq options). Length rules: 1.2 |x| + 4 covers 99.6% of Bible test targets
# (|y| / |x| is 1.02 on average in subwords); the paper's 2 |x| decodes 40% more positions; the predictor adds a
# margin of 2 tokens to its guess.
# (bottleneck, length rule, extra options)
NAT_VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    "soft": ("soft", "ratio", ["--length-ratio", "1.2", "--length-offset", "4"]),
    "hard": ("hard", "ratio", ["--length-ratio", "1.2", "--length-offset", "4"]),
    "soft_lenpred": ("soft", "predictor", []),
    "hard_lenpred": ("hard", "predictor", []),
    "soft_ratio2": ("soft", "ratio", ["--length-ratio", "2.0", "--length-offset", "0"]),
    # More bits per latent (the preset has 1,024 codes, 10 bits per 8 tokens): decoding from a perfect prior's codes
    # still scored 1.5 BLEU below greedy (the latent ablation's oracle rows in results/bible_research.md).
    "soft_lenpred_k4096": ("soft", "predictor", ["--codebook-size", "4096"]),
    "soft_lenpred_h2": ("soft", "predictor", ["--codebook-slices", "2"]),
}
PRIOR_LAYERS = 2  # as the vqnat_lt_cpu preset now has


def train_side_by_side(jobs: dict[str, list[str]], work: Path, out: Path) -> None:
    """Run the fairseq-train jobs ``{name: args}`` (save folder ``WORK/NAME``) at once (small models leave the GPU
    mostly idle), each logging to ``OUT/NAME.log``. The save folders are marked as vqnat's own, so their
    checkpoints load without ``--trust-checkpoint``; a failed job stops the others and the script."""
    for name in jobs:
        mark_own_save_dir(work / name)
    try:
        run_fairseq_parallel({name: ("train", args) for name, args in jobs.items()}, out)
    except FairseqError as err:
        raise SystemExit(f"Error: {err}") from None


def chosen_variants(parser: argparse.ArgumentParser, text: str, known: dict[str, object]) -> list[str]:
    """``--variants`` (comma-separated) -> names, each one of ``known`` (else a parser error naming the choices)."""
    variants = text.split(",")
    unknown = [v for v in variants if v not in known]
    if unknown:
        parser.error(f"unknown variants {unknown}: choose from {', '.join(known)}")
    return variants


def timeline_stamper(report: dict[str, object], path: Path) -> Callable[[str], None]:
    """A ``stamp(message)`` that appends ``[seconds since now] message`` to ``report["timeline"]``, prints it and
    rewrites ``report`` as JSON at ``path``, so a run cut off by a machine's time limit still leaves its report."""
    start = time.time()
    timeline: list[str] = report["timeline"]  # type: ignore[assignment]

    def stamp(message: str) -> None:
        timeline.append(f"[{time.time() - start:7.1f}s] {message}")
        print(timeline[-1], flush=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    return stamp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prepared", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--teacher-hours", type=float, default=0.045)
    parser.add_argument("--nat-hours", type=float, default=0.045)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--nat-arch", default="vqnat_lt_cpu")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up updates of every training")
    parser.add_argument("--variants", default="soft,hard", help=f"comma-separated: {', '.join(NAT_VARIANTS)}")
    parser.add_argument("--distilled", type=Path, default=None, help="skip teacher + distillation, use this folder")
    parser.add_argument("--export", default="", help="comma-separated runs (e.g. nat_soft,deep_shallow) to write "
                        "into OUT as fp16 chunks (NATs without their training-only weights)")
    parser.add_argument("--print-jobs", action="store_true",
                        help="print the fairseq-train arguments of the trainings as JSON and stop (needs --distilled)")
    args = parser.parse_args()
    variants = chosen_variants(parser, args.variants, NAT_VARIANTS)
    if args.print_jobs and args.distilled is None:
        parser.error("--print-jobs needs --distilled (the NATs' arguments name the distilled data)")
    cpu = args.device == "cpu"

    def budget(hours: float) -> list[str]:
        return ["--stop-time-hours", str(hours), "--validate-interval", "5"]

    folder = open_prepared(args.prepared)
    fast = TrainBudget(max_epoch=500, max_tokens=args.max_tokens, lr=1e-3, warmup_updates=args.warmup)
    deep_shallow = {"deep_shallow": teacher_train_args(folder.data_bin, args.work / "deep_shallow",
                                                       "cpu-deep-shallow", fast, cpu=cpu) + budget(args.teacher_hours)}

    def nat_jobs(distilled_bin: Path) -> dict[str, list[str]]:
        jobs = {}
        for name in variants:
            bottleneck, length_rule, extra = NAT_VARIANTS[name]
            extra = [*extra, "--prior-layers", str(PRIOR_LAYERS)]
            jobs[f"nat_{name}"] = nat_train_args(
                distilled_bin, args.work / f"nat_{name}", args.nat_arch, bottleneck, fast, cpu=cpu, extra=extra,
                length_rule=length_rule) + budget(args.nat_hours)
        return jobs

    if args.print_jobs:
        jobs = {**deep_shallow, **nat_jobs(open_prepared(args.distilled).data_bin)}
        print(json.dumps({name: [str(a) for a in job] for name, job in jobs.items()}, indent=2))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}, "timeline": []}
    stamp = timeline_stamper(summary, args.out / "summary.json")
    systems: dict[str, tuple[str, int]] = {"deep-shallow greedy": ("deep_shallow", 1)}
    if args.distilled is None:
        stamp("teacher + deep-shallow start")
        train_side_by_side({"teacher": teacher_train_args(folder.data_bin, args.work / "teacher", "cpu", fast, cpu=cpu)
                            + budget(args.teacher_hours), **deep_shallow}, args.work, args.out)
        stamp("teacher done")
        teacher = args.work / "teacher" / "checkpoint_last.pt"
        report = distill(teacher, folder.root, args.work / "distilled", beam=4, max_tokens=4 * args.max_tokens,
                         cpu=cpu, validate=False)
        summary["distill"] = report
        stamp("distill done")
        distilled = open_prepared(args.work / "distilled")
        systems = {"teacher greedy": ("teacher", 1), "teacher beam 4": ("teacher", 4), **systems}
        deep_shallow = {}
    else:
        distilled = open_prepared(args.distilled)
    stamp(f"training {', '.join(['nat_' + v for v in variants] + list(deep_shallow))}")
    train_side_by_side({**deep_shallow, **nat_jobs(distilled.data_bin)}, args.work, args.out)
    stamp("training done")
    systems.update({f"nat {name}": (f"nat_{name}", 1) for name in variants})
    for run in args.export.split(",") if args.export else []:  # first: the weights come back even if scoring fails
        pack_checkpoint(args.work / run / "checkpoint_last.pt", args.out / run, chunk_mb=DEFAULT_CHUNK_MB,
                        inference_only=run.startswith("nat"))
        stamp(f"exported {run}")
    scores: dict[str, object] = {}
    summary["test_scores"] = scores
    for name, (run, beam) in systems.items():
        try:
            result = evaluate_checkpoint(args.work / run / "checkpoint_last.pt", distilled.root, split="test",
                                         batch_size=256, options=DecodingOptions(beam=beam), device=args.device)
        except Exception as err:  # keep the other systems' scores
            scores[name] = {"error": f"{type(err).__name__}: {err}"}
            stamp(f"{name}: scoring failed: {err}")
            continue
        scores[name] = {k: result[k] for k in ("bleu", "chrf", "bleu_signature", "sentences", "seconds")}
        scores[name]["examples"] = result["examples"]
        stamp(f"{name}: BLEU {result['bleu']} chrF {result['chrf']}")
    for run in {run for run, _ in systems.values()}:
        log = (args.out / f"{run}.log").read_text(encoding="utf-8")
        summary.setdefault("epochs", {})[run] = log.count("end of epoch")  # type: ignore[union-attr]
        summary.setdefault("updates", {})[run] = _last_update(log)  # type: ignore[union-attr]
    stamp("scored")
    stamp("all done")


def _last_update(log: str) -> int:
    """The last ``num_updates`` fairseq printed in a training log (0 if none)."""
    return max((int(n) for n in re.findall(r"num_updates[= ](\d+)", log)), default=0)


if __name__ == "__main__":
    main()
