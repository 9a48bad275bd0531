"""Continue one trained latent transformer on a GPU under several settings at once, pick each setting's best
checkpoint by **valid** BLEU, and bring the best ones back.

    python recipes/bible_en_de/gpu_finetune.py DISTILLED INIT WORK OUT [--hours 0.1] [--variants d1,d3,...]
        [--interval 400] [--export-best 2] [--device cuda]

INIT is a full latent-transformer checkpoint (autoencoder included: a CPU run's ``checkpoint_*.pt``, or
``warm_start.py``'s output), given as a file or as the prefix of ``export_weights.py pack`` chunks. Every variant
starts from it with ``--finetune-from-model`` (fresh optimizer and schedule) and trains for ``--hours`` of wall
time, saving a checkpoint every ``--interval`` updates; small models leave a GPU mostly idle, so the variants run
as parallel processes. The training time the checkpoint carries is zeroed first: fairseq would otherwise count it
against ``--stop-time-hours``. Then every checkpoint is scored on valid, each variant's best on test, and the
``--export-best`` variants with the best valid BLEU are written into OUT as fp16 chunks (``export_weights.py
unpack`` makes them loadable), autoencoder included so that they can be continued again (about 28 MB each for
``vqnat_lt_cpu``; ``--inference-only-export`` leaves it out). ``OUT/finetune.json`` holds the timeline and every
score. A variant with ``codebook_slices`` H (``d1_prior3_h2``) starts from INIT widened to H slices by
``widen_slices.py`` (same translations at the start, H times the bits per latent to learn to use).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from recipes.bible_en_de.export_weights import is_inference_only, pack, unpack  # noqa: E402
from recipes.bible_en_de.gpu_pipeline import chosen_variants, timeline_stamper, train_in_parallel  # noqa: E402
from recipes.bible_en_de.learning_curve import find_checkpoints  # noqa: E402
from recipes.bible_en_de.widen_slices import codebook_slices, widen_checkpoint  # noqa: E402
from vqnat.inference import Translator  # noqa: E402
from vqnat.pipeline.evaluate import evaluate_checkpoint  # noqa: E402
from vqnat.pipeline.prepared import open_prepared  # noqa: E402
from vqnat.pipeline.presets import TrainBudget, nat_train_args  # noqa: E402

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # our own checkpoints, see vqnat/checkpoint.py

# name -> settings. The CPU continuation's prior overfitted (valid prior loss rising while train loss fell), so the
# variants try more dropout, everywhere or in the prior alone; "d1" continues with the CPU run's own setting.
FINETUNE_VARIANTS: dict[str, dict[str, float]] = {
    "d1": {"dropout": 0.1},
    "d3": {"dropout": 0.3},
    "d1_prior3": {"dropout": 0.1, "prior_dropout": 0.3},
    "d3_16k": {"dropout": 0.3, "max_tokens": 16384, "lr": 1e-3},
    "d2_prior4": {"dropout": 0.2, "prior_dropout": 0.4},
    "d1_prior3_h2": {"dropout": 0.1, "prior_dropout": 0.3, "codebook_slices": 2},
}

# The lines of a fairseq-train log worth keeping: progress, validation, stops and errors.
LOG_KEEP = re.compile(r"train_inner|\| valid |\| train \||Loaded checkpoint|done training|Error|error|Traceback")


def prepare_init(init: Path, work: Path) -> Path:
    """INIT (a checkpoint or export_weights chunks) -> ``WORK/init.pt`` with its recorded training time zeroed."""
    path = work / "init.pt"
    if init.is_file():
        state = torch.load(init, map_location="cpu", weights_only=False)
    else:
        unpack(init, path)
        state = torch.load(path, map_location="cpu", weights_only=False)
    if is_inference_only(state["model"]):
        raise SystemExit(f"{init} is an inference-only export: make it trainable with warm_start.py first")
    state["last_optimizer_state"] = None
    state.get("extra_state", {})["previous_training_time"] = 0.0
    torch.save(state, path)
    return path


def prepare_inits(init: Path, slices: set[int], work: Path) -> dict[int, Path]:
    """The init of every codebook width the variants ask for: ``{H: checkpoint}``. The prepared INIT serves its own
    width; a one-slice INIT is widened (``widen_slices.py``) to each other H."""
    ready = prepare_init(init, work)
    own = codebook_slices(ready)
    inits = {own: ready}
    for h in sorted(slices - {own}):
        if own != 1:
            raise SystemExit(f"{init} has {own} codebook slices: only a one-slice model can be widened to {h}")
        inits[h] = work / f"init_h{h}.pt"
        widen_checkpoint(ready, inits[h], h)
    return inits


def variant_args(name: str, data_bin: Path, save_dir: Path, init: Path, hours: float, interval: int,
                 max_tokens: int, lr: float, warmup: int, cpu: bool) -> list[str]:
    """fairseq-train arguments of one variant: the CPU recipe's NAT options plus the variant's settings."""
    settings = FINETUNE_VARIANTS[name]
    budget = TrainBudget(max_epoch=1000, max_tokens=int(settings.get("max_tokens", max_tokens)),
                         lr=settings.get("lr", lr), warmup_updates=warmup, save_interval_updates=interval)
    extra = ["--dropout", str(settings["dropout"]), "--finetune-from-model", str(init),
             "--keep-interval-updates", "100", "--stop-time-hours", str(hours), "--validate-interval", "1000"]
    if "prior_dropout" in settings:
        extra += ["--prior-dropout", str(settings["prior_dropout"])]
    if "codebook_slices" in settings:
        extra += ["--codebook-slices", str(int(settings["codebook_slices"]))]
    return nat_train_args(data_bin, save_dir, "vqnat_lt_cpu", "soft", budget, extra=extra, cpu=cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("distilled", type=Path, help="folder written by vqnat distill (or carry_prepared.sh)")
    parser.add_argument("init", type=Path, help="full latent-transformer checkpoint, or export_weights chunk prefix")
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hours", type=float, default=0.1, help="training wall time of every variant")
    parser.add_argument("--variants", default="d1,d3,d1_prior3,d3_16k",
                        help=f"comma-separated: {', '.join(FINETUNE_VARIANTS)}")
    parser.add_argument("--interval", type=int, default=400, help="updates between saved checkpoints")
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--lr", type=float, default=7e-4)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--export-best", type=int, default=2, help="variants whose best checkpoint comes back")
    parser.add_argument("--inference-only-export", action="store_true",
                        help="export without the autoencoder (smaller, but cannot be trained further)")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="seconds after the start past which no further checkpoint is scored (0: none), so the "
                             "export still happens inside a machine's time limit")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    variants = chosen_variants(parser, args.variants, FINETUNE_VARIANTS)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    report: dict[str, object] = {"command": " ".join(sys.argv), "variants": {v: FINETUNE_VARIANTS[v] for v in variants},
                                 "timeline": [], "scores": {}}
    stamp = timeline_stamper(report, args.out / "finetune.json")

    folder = open_prepared(args.distilled)
    slices = {v: int(FINETUNE_VARIANTS[v].get("codebook_slices", 1)) for v in variants}
    inits = prepare_inits(args.init, set(slices.values()), args.work)
    stamp(f"init ready: {', '.join(str(path) for path in inits.values())}")
    jobs = {f"ft_{v}": variant_args(v, folder.data_bin, args.work / f"ft_{v}", inits[slices[v]], args.hours,
                                    args.interval, args.max_tokens, args.lr, args.warmup, cpu=args.device == "cpu")
            for v in variants}
    failed = train_in_parallel(jobs, args.work, fail_fast=False)
    with open(args.out / "train_logs.txt", "w", encoding="utf-8") as merged:  # one file: few files come back
        for name in jobs:
            lines = (args.work / f"{name}.log").read_text(encoding="utf-8").splitlines()
            merged.writelines(f"{name} | {line}\n" for line in lines if LOG_KEEP.search(line))
    stamp(f"training done; failed: {failed or 'none'}")

    scores: dict[str, dict[str, object]] = report["scores"]  # type: ignore[assignment]
    for name in variants:
        save_dir = args.work / f"ft_{name}"
        if f"ft_{name}" in failed and not list(save_dir.glob("checkpoint*.pt")):
            continue
        rows, best, best_translator = [], None, None
        for updates, path in reversed(find_checkpoints(save_dir)):  # newest first: the deadline skips the oldest
            if args.deadline and time.time() - start > args.deadline and rows:
                stamp(f"{name}: deadline passed, {path.name} not scored")
                continue
            translator = Translator.load(path, data_dir=folder.data_bin, device=args.device)
            result = evaluate_checkpoint(path, folder.root, split="valid", batch_size=256, translator=translator,
                                         device=args.device)
            rows.append({"updates": updates, "checkpoint": str(path), "valid_bleu": result["bleu"],
                         "valid_chrf": result["chrf"]})
            if best is None or rows[-1]["valid_bleu"] > best["valid_bleu"]:  # the first of equals wins, as max()
                best, best_translator = rows[-1], translator  # kept for the test split: loaded once
        test = evaluate_checkpoint(best["checkpoint"], folder.root, split="test", batch_size=256,
                                   translator=best_translator, device=args.device)
        scores[name] = {"rows": rows, "best": {**best, "test_bleu": test["bleu"], "test_chrf": test["chrf"]},
                        "bleu_signature": test["bleu_signature"]}
        stamp(f"{name}: best valid {best['valid_bleu']} at {best['updates']} updates, test {test['bleu']}")
    ranked = sorted(scores, key=lambda n: scores[n]["best"]["valid_bleu"], reverse=True)  # type: ignore[index]
    for name in ranked[: args.export_best]:
        best_path = Path(scores[name]["best"]["checkpoint"])  # type: ignore[index]
        pack(best_path, args.out / f"ft_{name}", chunk_mb=15, inference_only=args.inference_only_export)
        stamp(f"exported ft_{name} ({best_path.name})")
    stamp("all done")


if __name__ == "__main__":
    main()
