"""The Bible recipe on one GPU within minutes: teacher (+ deep-shallow baseline) -> distill -> NAT soft + NAT hard
(trained in parallel) -> BLEU of each. Uses the library only (no CLI dependencies), so it runs on a bare GPU box
with torch + fairseq.

    python recipes/bible_en_de/gpu_pipeline.py PREPARED WORK OUT [--teacher-hours 0.045] [--nat-hours 0.045]
        [--device cuda]

Every training stops at its time limit (fairseq --stop-time-hours) and can be resumed by running it again.
``OUT/summary.json`` collects the timeline, sizes, and sacreBLEU/chrF of every system on the test split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vqnat.checkpoint import trusted_checkpoint_env  # noqa: E402
from vqnat.inference import DecodingOptions  # noqa: E402
from vqnat.pipeline.distill import distill  # noqa: E402
from vqnat.pipeline.evaluate import evaluate_checkpoint  # noqa: E402
from vqnat.pipeline.fairseq_run import fairseq_command  # noqa: E402
from vqnat.pipeline.prepared import open_prepared  # noqa: E402
from vqnat.pipeline.presets import TrainBudget, nat_train_args, teacher_train_args  # noqa: E402


def train_in_parallel(jobs: dict[str, list[str]], out: Path) -> None:
    """Run several fairseq-train jobs at once (small models leave the GPU mostly idle); fail if any fails."""
    procs = {}
    for name, args in jobs.items():
        log = open(out / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115
        procs[name] = (subprocess.Popen(fairseq_command("train", args), stdout=log, stderr=subprocess.STDOUT,
                                        env=trusted_checkpoint_env()), log)
    for name, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        if code != 0:
            tail = (out / f"{name}.log").read_text(encoding="utf-8").splitlines()[-30:]
            raise SystemExit(f"{name} failed (exit {code}):\n" + "\n".join(tail))


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
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = args.device == "cpu"
    start = time.time()
    timeline: list[str] = []
    summary: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}, "timeline": timeline}

    def stamp(message: str) -> None:
        timeline.append(f"[{time.time() - start:7.1f}s] {message}")
        print(timeline[-1], flush=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    def budget(hours: float) -> list[str]:
        return ["--stop-time-hours", str(hours), "--validate-interval", "5"]

    folder = open_prepared(args.prepared)
    fast = TrainBudget(max_epoch=500, max_tokens=args.max_tokens, lr=1e-3, warmup_updates=500)
    stamp("teacher + deep-shallow start")
    train_in_parallel({
        "teacher": teacher_train_args(folder.data_bin, args.work / "teacher", "cpu", fast, cpu=cpu)
        + budget(args.teacher_hours),
        "deep_shallow": teacher_train_args(folder.data_bin, args.work / "deep_shallow", "cpu-deep-shallow", fast,
                                           cpu=cpu) + budget(args.teacher_hours),
    }, args.out)
    stamp("teacher done")
    teacher = args.work / "teacher" / "checkpoint_last.pt"
    report = distill(teacher, folder.root, args.work / "distilled", beam=4, max_tokens=4 * args.max_tokens, cpu=cpu,
                     validate=False)
    summary["distill"] = report
    stamp("distill done")
    distilled = open_prepared(args.work / "distilled")
    train_in_parallel({
        f"nat_{bn}": nat_train_args(distilled.data_bin, args.work / f"nat_{bn}", args.nat_arch, bn, fast, cpu=cpu,
                                    extra=["--kmeans-init", "--reseed-dead-codes"])
        + budget(args.nat_hours) for bn in ("soft", "hard")}, args.out)
    stamp("nat soft + hard done")
    scores = {}
    systems = {"teacher greedy": ("teacher", 1), "teacher beam 4": ("teacher", 4),
               "deep-shallow greedy": ("deep_shallow", 1), "nat soft": ("nat_soft", 1), "nat hard": ("nat_hard", 1)}
    for name, (run, beam) in systems.items():
        result = evaluate_checkpoint(args.work / run / "checkpoint_last.pt", distilled.root, split="test",
                                     batch_size=256, options=DecodingOptions(beam=beam), device=args.device)
        scores[name] = {k: result[k] for k in ("bleu", "chrf", "bleu_signature", "sentences", "seconds")}
        scores[name]["examples"] = result["examples"]
        stamp(f"{name}: BLEU {result['bleu']} chrF {result['chrf']}")
    summary["test_scores"] = scores
    for run in ("teacher", "deep_shallow", "nat_soft", "nat_hard"):
        log = (args.out / f"{run}.log").read_text(encoding="utf-8")
        summary.setdefault("epochs", {})[run] = log.count("end of epoch")  # type: ignore[union-attr]
    stamp("all done")


if __name__ == "__main__":
    main()
