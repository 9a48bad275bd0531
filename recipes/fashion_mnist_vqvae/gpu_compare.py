"""Hard vs soft EM on Fashion-MNIST with a bigger budget, on one GPU, in a plain PyTorch loop.

The accelerator machines have PyTorch but no fairseq, so this script trains the same :class:`ImageVQVAE` with the
same loss (:func:`vqvae_loss`, the one the fairseq criterion uses) and measures it with the same
:func:`evaluate_images` as ``vqnat image evaluate``; only the loop (Adam, shuffled batches) is its own.

    python recipes/fashion_mnist_vqvae/gpu_compare.py --data-dir .venv/share/datasets/fashion-mnist \
        --out results/gpu --arch base --updates 3000 --batch-size 128 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vqnat.data.image_grid import make_grid, save_png
from vqnat.data.images import load_image_dataset
from vqnat.machine import machine_record
from vqnat.modules.image_vqvae import ARCH_SIZES, ImageVQVAE, ImageVQVAEConfig, vqvae_loss
from vqnat.pipeline.image_inference import evaluate_images, reconstruct_images, sample_images


def train_one(mode: str, seed: int, splits, args, device: torch.device) -> tuple[ImageVQVAE, dict]:
    torch.manual_seed(seed)
    # The config `fairseq-train --arch vqnat_image_vqvae_<arch>` builds (fairseq is absent on the GPU machines).
    net = ImageVQVAE(ImageVQVAEConfig.image_defaults(args.arch, bottleneck=mode), splits.shape).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    train = torch.from_numpy(splits.images["train"]).to(device)  # (N, 1, 28, 28) uint8, all on the GPU
    rng = np.random.default_rng(seed)
    order, cursor = rng.permutation(len(train)), 0
    trace = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(1, args.updates + 1):
        if cursor + args.batch_size > len(order):
            order, cursor = rng.permutation(len(train)), 0
        index = torch.from_numpy(order[cursor:cursor + args.batch_size]).to(device)
        cursor += args.batch_size
        batch = train[index]
        out = net(batch)
        terms = vqvae_loss(net, out, batch)
        optimizer.zero_grad(set_to_none=True)
        (terms.loss / terms.subpixels).backward()
        optimizer.step()
        if step % args.log_every == 0 or step == args.updates:
            latent_bits = net.uniform_latent_nats / net.num_subpixels / math.log(2)  # log2 K * S / D
            trace.append({"update": step, "train_bpd": terms.nll.item() / terms.subpixels / math.log(2) + latent_bits,
                          "perplexity": out.vq.perplexity.item(), "dead_fraction": out.vq.dead_fraction.item()})
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = evaluate_images(net, splits.images["test"], batch_size=500)
    record = {"bottleneck": mode, "seed": seed, "train_s": round(seconds, 2), **result.as_dict(), "trace": trace}
    print(f"{mode} seed {seed}: test bpd {result.bpd:.4f} prior {result.prior_bpd:.4f} perplexity "
          f"{result.perplexity:.1f} unused {result.unused_fraction:.2f} dead {result.dead_fraction:.2f} "
          f"({seconds:.0f} s)", flush=True)
    return net, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", choices=sorted(ARCH_SIZES), default="base")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-minutes", type=float, default=float("inf"),
                        help="skip the remaining seeds when the next pair of runs would end after this")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    splits = load_image_dataset("fashion-mnist", args.data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    began = time.perf_counter()
    for seed in args.seeds:
        elapsed = time.perf_counter() - began
        per_pair = elapsed / (len(runs) // 2) if runs else 0.0
        if elapsed + per_pair > 60 * args.max_minutes:
            print(f"stopping before seed {seed}: {elapsed:.0f} s spent, a pair takes ~{per_pair:.0f} s", flush=True)
            break
        for mode in ("hard", "soft"):
            net, record = train_one(mode, seed, splits, args, device)
            runs.append(record)
            if seed == args.seeds[0]:
                save_png(make_grid(sample_images(net, 36, seed=0)), args.out / f"gpu_{mode}_samples.png")
                test = splits.images["test"][:8]
                save_png(make_grid(np.concatenate([test, reconstruct_images(net, test)]), columns=8),
                         args.out / f"gpu_{mode}_reconstructions.png")
            write_json(args, runs)


def write_json(args: argparse.Namespace, runs: list[dict]) -> None:
    """Write everything measured so far (after every run, so a cut-off job still leaves its results)."""
    summary = {}
    for mode in ("hard", "soft"):
        mine = [r for r in runs if r["bottleneck"] == mode]
        if not mine:
            continue
        summary[mode] = {"seeds": [r["seed"] for r in mine]}
        for key in ("bpd", "prior_bpd", "recon_bpd", "perplexity", "unused_fraction", "dead_fraction", "train_s"):
            values = [r[key] for r in mine]
            summary[mode][key] = {"mean": float(np.mean(values)),
                                  "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}
    payload = {"setup": {**vars(args), "out": str(args.out), "loop": "plain PyTorch (no fairseq on the GPU machine)",
                         "config": dataclasses.asdict(ImageVQVAEConfig.image_defaults(args.arch))},
               "machine": machine_record(), "runs": runs, "summary": summary}
    (args.out / "gpu_compare.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
