"""Stacks of PyTorch Transformer layers (pre-norm, batch-first) used by the latent transformer."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def causal_mask(length: int, device: torch.device) -> Tensor:
    """``[T, T]`` bool mask, True above the diagonal: position t may attend to positions <= t only."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


class EncoderStack(nn.Module):
    """Self-attention layers over ``[B, S, D]`` with a key-padding mask ``[B, S]`` (True = pad)."""

    def __init__(self, dim: int, layers: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, batch_first=True, norm_first=True)
        self.layers = nn.ModuleList(_clone(layer, layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, padding_mask: Tensor) -> Tensor:
        """``[B, S, D] -> [B, S, D]``."""
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding_mask)
        return self.norm(x)


class CrossAttentionStack(nn.Module):
    """Layers of self-attention (optionally causal) + attention to a memory (the source encoding).

    ``causal=False`` is the parallel decoder / latent autoencoder (every position sees every other one);
    ``causal=True`` is the autoregressive latent prior.
    """

    def __init__(self, dim: int, layers: int, heads: int, ffn_dim: int, dropout: float, causal: bool) -> None:
        super().__init__()
        layer = nn.TransformerDecoderLayer(dim, heads, ffn_dim, dropout, batch_first=True, norm_first=True)
        self.layers = nn.ModuleList(_clone(layer, layers))
        self.norm = nn.LayerNorm(dim)
        self.causal = causal

    def forward(self, x: Tensor, padding_mask: Tensor | None, memory: Tensor, memory_padding_mask: Tensor) -> Tensor:
        """``x [B, T, D]`` attends to itself (``padding_mask [B, T]``) and to ``memory [B, S, D]``."""
        self_mask = causal_mask(x.shape[1], x.device) if self.causal else None
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=self_mask, tgt_is_causal=self.causal, tgt_key_padding_mask=padding_mask,
                      memory_key_padding_mask=memory_padding_mask)
        return self.norm(x)


def _clone(layer: nn.Module, n: int) -> list[nn.Module]:
    import copy

    return [copy.deepcopy(layer) for _ in range(n)]
