"""Codebook-health metrics: how many codes are in use, and how evenly."""

from __future__ import annotations

import torch
from torch import Tensor


def usage_perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of code usage, averaged over slices.

    Args:
        counts: ``[H, K]`` (soft) number of vectors assigned to each code of each of H slices.

    Returns:
        scalar tensor in ``[1, K]``: K when every code is used equally, 1 when a single code takes everything.
    """
    total = counts.sum(-1, keepdim=True)
    p = counts / torch.where(total > 0, total, torch.ones_like(total))  # (H, K); all-zero rows stay zero
    entropy = -torch.special.xlogy(p, p).sum(-1)  # (H,)
    return entropy.exp().mean()


def dead_code_fraction(ema_count: Tensor, threshold: float) -> Tensor:
    """Fraction of codes whose EMA assignment count is below ``threshold`` (vectors per step).

    Args:
        ema_count: ``[H, K]`` exponential moving average of per-step assignment counts.
    """
    return (ema_count < threshold).float().mean()
