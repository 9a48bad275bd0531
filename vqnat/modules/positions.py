"""Sinusoidal position encodings (Vaswani et al. 2017) for batch-first tensors."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_table(positions: Tensor, dim: int) -> Tensor:
    """Encode integer positions ``[...]`` as ``[..., dim]`` sines and cosines of geometric frequencies.

    ``pe[p, 2i] = sin(p / 10000^(2i/dim))``, ``pe[p, 2i+1] = cos(...)``; ``dim`` must be even.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float) * (-math.log(10000.0) / half))
    angles = positions.float().unsqueeze(-1) * freqs  # (..., dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (..., dim)


def positions_from_mask(nonpad: Tensor) -> Tensor:
    """0-based positions counted over non-pad tokens only, so left- and right-padded rows agree.

    Args:
        nonpad: ``[B, T]`` bool, True at real tokens.

    Returns:
        ``[B, T]`` long; pads get position 0 (they are masked out anyway).
    """
    return ((nonpad.long().cumsum(1) - 1) * nonpad.long()).clamp_min(0)
