"""Forward + backward time of the VQ bottleneck vs vector_quantize_pytorch.VectorQuantize (EMA).

    python benchmarks/bench_quantizer.py [--vectors 4096 --dim 256 --codebook 4096 --repeats 10]

Prints a table with ratios to vqnat hard EM and writes results/bench_quantizer.json. Goals: hard EM
no slower than the peer (ratio <= 1.0); soft EM with m = 10 at most 1.3x hard EM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import machine_record, median_seconds, write_json  # noqa: E402
from vqnat.quantization import VectorQuantizer  # noqa: E402


def step_fn(module: torch.nn.Module, z: torch.Tensor, unpack):
    def step() -> None:
        zz = z.detach().requires_grad_(True)
        quantized, loss = unpack(module(zz))
        (quantized.square().mean() + loss).backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--codebook", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/bench_quantizer.json")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    z = torch.randn(1, args.vectors, args.dim)  # (B, N, D)
    candidates = {
        "vqnat hard EM": (VectorQuantizer(args.dim, args.codebook, mode="hard", decay=0.999, beta=0.25),
                          lambda out: (out.quantized, out.loss)),
        f"vqnat soft EM (m={args.samples})": (
            VectorQuantizer(args.dim, args.codebook, mode="soft", num_samples=args.samples, decay=0.999,
                            beta=0.25),
            lambda out: (out.quantized, out.loss)),
    }
    try:
        from vector_quantize_pytorch import VectorQuantize

        peer = VectorQuantize(dim=args.dim, codebook_size=args.codebook, decay=0.999, commitment_weight=0.25,
                              rotation_trick=False)
        candidates["vector_quantize_pytorch EMA"] = (peer, lambda out: (out[0], out[2]))
    except ImportError:
        print("vector_quantize_pytorch not installed (pip install -r requirements-dev.txt): peer skipped")

    rows = {}
    for name, (module, unpack) in candidates.items():
        module.train()
        rows[name] = median_seconds(step_fn(module, z, unpack), warmup=3, repeats=args.repeats)
    base = rows["vqnat hard EM"]
    print(f"\nforward+backward, {args.vectors} vectors x dim {args.dim}, codebook {args.codebook}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'quantizer':<36}{'ms':>10}{'vs vqnat hard':>16}")
    for name, seconds in rows.items():
        print(f"{name:<36}{seconds * 1e3:>10.1f}{seconds / base:>16.2f}")
    write_json(args.out, {"benchmark": "quantizer forward+backward", "args": vars(args),
                          "machine": machine_record(), "median_ms": {k: v * 1e3 for k, v in rows.items()}})


if __name__ == "__main__":
    main()
