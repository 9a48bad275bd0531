"""Hard EM vs soft EM as k-means on a Gaussian mixture: inertia and codebook usage per step."""

from __future__ import annotations

from typing import NamedTuple

import torch

from vqnat.quantization import VectorQuantizer


class EMTrace(NamedTuple):
    mode: str
    inertia: list[float]  # sum of squared distances to the nearest code, per step
    perplexity: list[float]
    dead_fraction: list[float]


def compare_hard_soft_em(
    steps: int = 50, clusters: int = 16, codebook_size: int = 64, dim: int = 8, seed: int = 0
) -> list[EMTrace]:
    """Run hard and soft EM from the same random codebook on the same mixture, both at decay 0.9."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(clusters, dim, generator=g) * 3
    x = (centers.repeat_interleave(64, 0) + 0.5 * torch.randn(clusters * 64, dim, generator=g))
    traces = []
    for mode in ("hard", "soft"):
        torch.manual_seed(seed)
        vq = VectorQuantizer(dim, codebook_size, mode=mode, decay=0.9, num_samples=10).train()
        inertia, perplexity, dead = [], [], []
        for _ in range(steps):
            out = vq(x)
            d = torch.cdist(x, vq.codebook.embedding[0]).min(1).values.pow(2).sum()
            inertia.append(d.item())
            perplexity.append(out.perplexity.item())
            dead.append(out.dead_fraction.item())
        traces.append(EMTrace(mode, inertia, perplexity, dead))
    return traces
