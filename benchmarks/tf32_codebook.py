"""How much TF32 matmuls change the codebook's E step, emulated on the CPU.

TF32 keeps fp32's range and 10 of its 23 mantissa bits for a matmul's inputs, and sums in fp32. Here the inputs of
the distance matmul ``||e||^2 - 2 <z, e>`` are rounded to 10 mantissa bits (round to nearest) and the result is
compared with fp64 on synthetic encoder outputs of the paper's base size: K = 4096 codes of D = 512 around a common
centre of norm about sqrt(D) (as layer-normalized outputs have), each vector a code plus Gaussian noise of the
codes' own spread. The spread sets how soft the posterior softmax(-d) is: the expected squared distance between two
codes, 2 * spread^2 * D, runs from 1 (very soft) to 64 (hard). Reported per spread: the posterior's mean
entropy (nats; log K = 8.3 is uniform), the share of vectors whose nearest code changes, the mean total-variation
distance between the two posteriors, and the largest distance error.

    python benchmarks/tf32_codebook.py --out results/tf32_codebook.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def to_tf32(x: torch.Tensor) -> torch.Tensor:
    """fp32 values rounded to TF32's 10 mantissa bits (to nearest; ties away from zero), kept as fp32."""
    bits = x.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def distances(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``[N, D], [K, D] -> [N, K]``: ``||e||^2 - 2 <z, e>`` in fp64 (the inputs' rounding is all that differs)."""
    z, codes = z.double(), codes.double()
    return codes.pow(2).sum(-1) - 2 * z @ codes.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=4096)
    parser.add_argument("--codes", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    centre = torch.randn(args.dim)
    rows = []
    for gap in (1.0, 4.0, 8.0, 16.0, 64.0):
        spread = (gap / (2 * args.dim)) ** 0.5
        codes = centre + spread * torch.randn(args.codes, args.dim)
        z = codes[torch.randint(0, args.codes, (args.vectors,))] + spread * torch.randn(args.vectors, args.dim)
        exact = distances(z, codes)
        rounded = distances(to_tf32(z), to_tf32(codes))
        posterior = torch.softmax(-exact, -1)
        entropy = -torch.special.xlogy(posterior, posterior).sum(-1).mean().item()
        nearest_changed = (exact.argmin(-1) != rounded.argmin(-1)).double().mean().item()
        tv = 0.5 * (posterior - torch.softmax(-rounded, -1)).abs().sum(-1).mean().item()
        rows.append({"code_gap": gap, "posterior_entropy": round(entropy, 3),
                     "nearest_code_changed": nearest_changed, "posterior_total_variation": round(tv, 4),
                     "max_abs_distance_error": round((exact - rounded).abs().max().item(), 4)})
        print(json.dumps(rows[-1]))
    if args.out:
        report = {"vectors": args.vectors, "codes": args.codes, "dim": args.dim, "rows": rows,
                  "command": "python benchmarks/tf32_codebook.py --out " + str(args.out)}
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
