"""Discrete likelihood of 8-bit images and the bits/dim bound of a VQ-VAE (van den Oord et al. 2017).

For an image x with D = C * H * W subpixels, a deterministic encoder picks codes c(x) (S latent tokens, K codes
each); the evidence lower bound with a prior p(c) is

    -log p(x) <= -log p(x | c(x)) - log p(c(x))        (the KL of a one-hot posterior is -log p(c))

    bits/dim = [ -log p(x | c) - log p(c) ] / (D ln 2).

With the uniform prior ``-log p(c) = S log K``; with a learned prior it is the prior's NLL of the codes, a tighter
bound once the prior beats uniform. ``-log p(x | c)`` is the decoder's categorical NLL of each 8-bit subpixel.
"""

from __future__ import annotations

import math

from torch import Tensor
from torch.nn import functional as F


def pixel_nll(logits: Tensor, images: Tensor) -> Tensor:
    """Categorical NLL in nats per image: logits ``[B, 256, C, H, W]``, images uint8 ``[B, C, H, W]`` -> ``[B]``."""
    nll = F.cross_entropy(logits.float(), images.long(), reduction="none")  # (B, C, H, W)
    return nll.flatten(1).sum(-1)


def uniform_latent_nats(num_latent_tokens: int, codebook_size: int) -> float:
    """``-log p(c)`` under the uniform prior: S log K nats per image."""
    return num_latent_tokens * math.log(codebook_size)


def bits_per_dim(nll_nats: float, latent_nats: float, num_subpixels: int) -> float:
    """``(nll + latent) / (num_subpixels * ln 2)``; all three summed over the same images."""
    if num_subpixels <= 0:
        raise ValueError(f"num_subpixels must be > 0, got {num_subpixels}")
    return (nll_nats + latent_nats) / (num_subpixels * math.log(2))
