"""Compress a sequence 2^nc times along time and expand it back (Kaiser et al. 2018, t2t ``transformer_nat``).

Compression step: stride-2 convolution (kernel 3) then a residual convolution block: ``[B, T, D] -> [B, T/2, D]``.
Expansion step: a linear map to 2D features split into two time steps ("depth to space"), then a residual
block: ``[B, L, D] -> [B, 2L, D]``. nc steps of each give the 8x (nc = 3) compression of the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def zero_beyond(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero the positions ``t >= lengths[b]`` of ``x [B, T, D]``, so a convolution sees the same zeros at a
    sentence's end whether or not longer sentences share its batch."""
    if lengths is None:
        return x
    keep = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    return x * keep.unsqueeze(-1).to(x.dtype)


class ResidualConvBlock(nn.Module):
    """``x + Conv1d(ReLU(LayerNorm(x)))`` with kernel 3, same length: ``[B, T, D] -> [B, T, D]``."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x).relu().transpose(1, 2)  # (B, D, T) for Conv1d
        return x + self.dropout(self.conv(h).transpose(1, 2))  # (B, T, D)


class Compressor(nn.Module):
    """``[B, T, D] -> [B, T / 2^nc, D]``; T and the optional ``lengths [B]`` must be multiples of 2^nc."""

    def __init__(self, dim: int, num_steps: int, dropout: float) -> None:
        super().__init__()
        self.factor = 2**num_steps
        self.downs = nn.ModuleList(nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1) for _ in range(num_steps))
        self.blocks = nn.ModuleList(ResidualConvBlock(dim, dropout) for _ in range(num_steps))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if x.shape[1] % self.factor:
            raise ValueError(f"sequence length {x.shape[1]} is not a multiple of the compression factor {self.factor}")
        for down, block in zip(self.downs, self.blocks, strict=True):
            x = down(zero_beyond(x, lengths).transpose(1, 2)).transpose(1, 2)  # (B, T, D) -> (B, T/2, D)
            lengths = None if lengths is None else lengths // 2
            x = block(zero_beyond(x, lengths))
        return zero_beyond(x, lengths)


class Decompressor(nn.Module):
    """``[B, L, D] -> [B, L * 2^nc, D]``; ``lengths [B]`` (in latents) masks each sentence's own positions."""

    def __init__(self, dim: int, num_steps: int, dropout: float) -> None:
        super().__init__()
        self.ups = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(num_steps))
        self.blocks = nn.ModuleList(ResidualConvBlock(dim, dropout) for _ in range(num_steps))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        for up, block in zip(self.ups, self.blocks, strict=True):
            b, length, d = x.shape
            x = up(x).view(b, length * 2, d)  # (B, L, 2D) -> (B, 2L, D): each latent becomes two steps
            lengths = None if lengths is None else lengths * 2
            x = block(zero_beyond(x, lengths))
        return zero_beyond(x, lengths)
