"""An autoregressive prior over a grid of discrete latent codes (a small causal Transformer).

The codes of one image, ``[B, h, w, H]`` (H codebook slices per position), are read in raster order with the
slices innermost as a sequence of ``S = h * w * H`` tokens from a vocabulary of K codes, and modelled as

    p(c_1 .. c_S) = prod_s p(c_s | c_<s),

with a start token (id K) in front. Its negative log-likelihood ``-log p(c)`` (in nats) replaces the uniform
prior's ``S * log K`` in the bits/dim bound, and :meth:`LatentPrior.sample` draws new code grids for the decoder.
It is trained on stop-gradient codes: no gradient reaches the encoder or the codebook.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LatentPrior(nn.Module):
    """Causal Transformer over ``S`` code tokens with vocabulary ``K``: ``codes [B, S] -> logits [B, S, K]``."""

    def __init__(self, codebook_size: int, length: int, dim: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.length = length
        self.token_embedding = nn.Embedding(codebook_size + 1, dim)  # id K = start token
        self.position_embedding = nn.Parameter(torch.randn(length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, codebook_size)
        self.register_buffer("mask", torch.ones(length, length, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, codes: Tensor) -> Tensor:
        """Teacher-forced logits: ``codes [B, s] (s <= S) -> [B, s, K]``; position t sees codes < t only."""
        b, s = codes.shape
        start = codes.new_full((b, 1), self.codebook_size)
        inputs = torch.cat([start, codes[:, :-1]], dim=1)  # (B, s): shifted right
        x = self.token_embedding(inputs) + self.position_embedding[:s]  # (B, s, dim)
        x = self.layers(x, mask=self.mask[:s, :s], is_causal=True)
        return self.output(self.norm(x))  # (B, s, K)

    def nll(self, codes: Tensor) -> Tensor:
        """``-log p(codes)`` per sequence in nats: ``[B, S] -> [B]``."""
        logits = self(codes)  # (B, S, K)
        return nn.functional.cross_entropy(logits.transpose(1, 2), codes, reduction="none").sum(-1)

    @torch.no_grad()
    def sample(self, num: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num`` code sequences ``[num, S]`` one token at a time from ``softmax(logits / temperature)``."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()  # no dropout while sampling
        device = self.position_embedding.device
        codes = torch.zeros(num, 0, dtype=torch.long, device=device)
        for _ in range(self.length):
            # Feeding [codes, dummy] makes the last position predict the next token from all codes so far.
            logits = self(torch.cat([codes, codes.new_zeros(num, 1)], dim=1))[:, -1]  # (num, K)
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (num, 1)
            codes = torch.cat([codes, nxt], dim=1)
        self.train(was_training)
        return codes  # (num, S)
