"""Collect the runs of run.sh into one JSON (per run, and mean / spread per bottleneck) and copy example PNGs.

    .venv/bin/python recipes/fashion_mnist_vqvae/summarize.py work/fashion_mnist_vqvae --updates 1000 \
        --json results/image_vqvae_fashion_mnist.json --png-prefix results/image_vqvae_fashion_mnist
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
from pathlib import Path

from vqnat.machine import machine_record

METRICS = ("bpd", "prior_bpd", "recon_bpd", "perplexity", "used_codes", "unused_fraction", "dead_fraction",
           "train_wall_s", "train_cpu_s")


def collect(out: Path) -> list[dict]:
    runs = []
    for run in sorted(out.iterdir()):
        match = re.fullmatch(r"(hard|soft)_seed(\d+)", run.name)
        if not match or not (run / "test.json").is_file():
            continue
        test = json.loads((run / "test.json").read_text())
        stats = json.loads((run / "train_stats.json").read_text())
        runs.append({
            "bottleneck": match.group(1), "seed": int(match.group(2)), "run_dir": str(run),
            **{k: test[k] for k in METRICS if k in test}, "num_test_images": test["num_images"],
            "codebook_size": test["codebook_size"], "train_wall_s": stats["wall_s"], "train_cpu_s": stats["cpu_s"],
            "command": " ".join(stats["argv"]),
        })
    return runs


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for mode in ("hard", "soft"):
        mine = [r for r in runs if r["bottleneck"] == mode]
        if not mine:
            continue
        summary[mode] = {"seeds": [r["seed"] for r in mine]}
        for key in METRICS:
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                summary[mode][key] = {
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "min": min(values), "max": max(values),
                }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="run.sh's output folder")
    parser.add_argument("--updates", type=int, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--png-prefix", required=True)
    args = parser.parse_args()
    runs = collect(args.out)
    if not runs:
        raise SystemExit(f"no finished runs (hard|soft)_seedN with test.json under {args.out}")
    pngs = []
    for mode in ("hard", "soft"):
        mine = sorted((r for r in runs if r["bottleneck"] == mode), key=lambda r: r["seed"])
        if mine:
            for kind in ("samples", "reconstructions"):
                dest = Path(f"{args.png_prefix}_{mode}_{kind}.png")
                shutil.copyfile(Path(mine[0]["run_dir"]) / f"{kind}.png", dest)
                pngs.append({"bottleneck": mode, "seed": mine[0]["seed"], "kind": kind, "path": str(dest)})
    payload = {
        "experiment": "Image VQ-VAE on Fashion-MNIST: hard EM vs soft EM at the same compute budget",
        "setup": {
            "dataset": "fashion-mnist (Debian dataset-fashion-mnist): train 54k, valid 6k, test 10k (all 10k "
                       "test images evaluated)",
            "arch": "vqnat_image_vqvae_tiny: 2 stride-2 convs + 1 residual block, 32 channels, 7x7 latents, "
                    "D = 16, K = 64, codebook_decay 0.99, beta 0.25, random code init; prior: 2-layer causal "
                    "Transformer (dim 64)",
            "soft_em": "m = 10 samples, tau = 1",
            "budget": f"{args.updates} Adam updates of 64 images (lr 1e-3), one CPU thread, the same for both",
            "bpd": "test bits/dim = (-log p(x|c) - log p(c)) / (784 ln 2), nearest-code encoder in eval; "
                   "bpd: uniform prior over codes (49 * log2 64 / 784 = 0.375 bits/dim); prior_bpd: the learned "
                   "prior",
            "perplexity": "exp(entropy) of code usage over the 10k test images (1..64)",
            "dead_fraction": "codes whose bias-corrected EMA usage is below 0.01 vectors per update at the end "
                             "of training (vqnat.quantization.EMACodebook.dead_fraction)",
            "unused_fraction": "codes never chosen on the test split",
            "time": "train_wall_s / train_cpu_s of fairseq-train, incl. start-up and validation on 1000 images; "
                    "the machine was shared (2 cores), so wall time is noisy and CPU time is the fairer figure",
        },
        "machine": machine_record(),
        "runs": runs,
        "summary": summarize(runs),
        "pngs": pngs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{'run':<12}{'bpd':>8}{'prior':>8}{'recon':>8}{'perpl':>8}{'unused':>8}{'dead':>7}{'cpu s':>8}")
    for r in runs:
        print(f"{r['bottleneck'] + ' s' + str(r['seed']):<12}{r['bpd']:>8.4f}{r['prior_bpd']:>8.4f}"
              f"{r['recon_bpd']:>8.4f}{r['perplexity']:>8.2f}{r['unused_fraction']:>8.2f}{r['dead_fraction']:>7.2f}"
              f"{r['train_cpu_s']:>8.0f}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
