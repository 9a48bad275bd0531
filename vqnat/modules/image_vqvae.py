"""The image VQ-VAE (pure PyTorch): conv encoder -> EM vector quantizer -> conv decoder, plus a latent prior.

    images uint8 [B, C, H, W] --scale to [-1, 1]--> ConvEncoder --> z [B, h, w, D]
        --VectorQuantizer (hard or soft EM)--> q [B, h, w, D], codes [B, h, w, Hs]
        --ConvDecoder--> logits [B, 256, C, H, W]           (a categorical over each 8-bit subpixel)
    codes --stop-gradient--> LatentPrior --> prior logits [B, S, K], S = h * w * Hs

The fairseq model (:mod:`vqnat.models.image_vqvae`) wraps this module; the loss and bits/dim live in
:mod:`vqnat.criterions.image_bits` and :mod:`vqnat.modules.image_likelihood`.

The bottleneck's options are :class:`~vqnat.quantization.QuantizerConfig`'s (the translation model's names, defaults
and help); the image model's own bottleneck defaults are :data:`IMAGE_QUANTIZER_DEFAULTS`, applied by the fairseq
architectures and by :meth:`ImageVQVAEConfig.image_defaults` (the plain PyTorch way to the same config).

No ``from __future__ import annotations`` here: fairseq reads :class:`ImageVQVAEConfig`'s field types at run time.
The field names must not repeat any fairseq option (fairseq flattens every config into one namespace: a model
field named ``ema_decay`` silently took the value of fairseq's own ``--ema-decay``, 0.9999); a test checks this.
"""

import math
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Self

import torch
from torch import Tensor, nn

from vqnat.modules.image_conv import PIXEL_LEVELS, ConvDecoder, ConvEncoder
from vqnat.modules.image_likelihood import pixel_nll
from vqnat.modules.latent_prior import LatentPrior
from vqnat.quantization import BOTTLENECKS, QuantizerConfig, QuantizerOutput, VectorQuantizer

PIXEL_MODES = ("mean", "mode", "sample")

# The image model's bottleneck where it differs from QuantizerConfig's (the translation model's) defaults: the
# VQ-VAE's hard EM over K = 512 codes from random codes, no reseeding. Decay 0.99 (van den Oord et al.) rather than
# the paper's 0.999: the codebook must keep up in short runs.
IMAGE_QUANTIZER_DEFAULTS: dict[str, Any] = {
    "bottleneck": "hard", "codebook_size": 512, "codebook_decay": 0.99, "no_kmeans_init": True,
    "no_reseed_dead_codes": True,
}
# Sizes of the architectures vqnat_image_vqvae_<name> (over the dataclass defaults, which are base's).
ARCH_SIZES: dict[str, dict[str, Any]] = {
    "base": {},
    "tiny": {"hidden_channels": 32, "residual_channels": 16, "num_residual_blocks": 1, "latent_dim": 16,
             "codebook_size": 64, "prior_dim": 64, "prior_layers": 2, "prior_heads": 2},
}
# Bottleneck options as checkpoints written before the image model took QuantizerConfig's names saved them:
# old name -> (new name, whether the boolean is inverted). Read by :func:`upgrade_legacy_config`.
LEGACY_QUANTIZER_NAMES: dict[str, tuple[str, bool]] = {
    "num_slices": ("codebook_slices", False),
    "soft_temperature": ("softmax_temperature", False),
    "commitment_beta": ("beta", False),
    "kmeans_init": ("no_kmeans_init", True),
    "reseed_dead_codes": ("no_reseed_dead_codes", True),
}


@dataclass
class ImageVQVAEConfig(QuantizerConfig):
    """Sizes of the image VQ-VAE (defaults: the ``vqnat_image_vqvae_base`` architecture) and, inherited from
    :class:`~vqnat.quantization.QuantizerConfig`, its bottleneck.

    The inherited bottleneck defaults are the translation model's: build the image model's config with
    :meth:`image_defaults`, which applies :data:`IMAGE_QUANTIZER_DEFAULTS` as the fairseq architectures do.
    """

    hidden_channels: int = field(default=128, metadata={"help": "channels of the conv encoder/decoder trunk"})
    residual_channels: int = field(default=32, metadata={"help": "inner channels of each residual block"})
    num_residual_blocks: int = field(default=2, metadata={"help": "residual blocks in the encoder and decoder"})
    num_downsamples: int = field(
        default=2, metadata={"help": "stride-2 convolutions: the latent grid is (H/2^n) x (W/2^n), 7x7 for 28x28"})
    latent_dim: int = field(default=64, metadata={"help": "D, size of each latent vector"})
    prior_dim: int = field(default=128, metadata={"help": "width of the latent prior Transformer"})
    prior_layers: int = field(default=2, metadata={"help": "layers of the latent prior Transformer"})
    prior_heads: int = field(default=4, metadata={"help": "attention heads of the latent prior"})
    prior_dropout: float = field(default=0.1, metadata={"help": "dropout in the latent prior"})
    no_prior: bool = field(default=False, metadata={"help": "train no latent prior (bits/dim with uniform prior only)"})

    @classmethod
    def image_defaults(cls, arch: str = "base", **overrides: Any) -> Self:
        """The config ``fairseq-train --arch vqnat_image_vqvae_<arch>`` builds: the dataclass defaults, then
        :data:`IMAGE_QUANTIZER_DEFAULTS`, then the architecture's :data:`ARCH_SIZES`, then ``overrides``."""
        if arch not in ARCH_SIZES:
            raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(ARCH_SIZES)}")
        return cls(**{**IMAGE_QUANTIZER_DEFAULTS, **ARCH_SIZES[arch], **overrides})


def upgrade_legacy_config(model_cfg: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Rename, in place, the bottleneck options of a saved model config that predates :class:`QuantizerConfig`'s
    names (see :data:`LEGACY_QUANTIZER_NAMES`; ``kmeans_init=True`` becomes ``no_kmeans_init=False``). A config
    with the current names is left as it is. Returns ``model_cfg``."""
    for old, (new, inverted) in LEGACY_QUANTIZER_NAMES.items():
        if old in model_cfg:
            value = model_cfg.pop(old)
            model_cfg[new] = (not value) if inverted else value
    return model_cfg


class ImageVQVAEOutput(NamedTuple):
    """What :meth:`ImageVQVAE.forward` returns for images ``[B, C, H, W]``.

    logits:        ``[B, 256, C, H, W]`` decoder logits over each subpixel's 8-bit value.
    codes:         ``[B, h, w, Hs]`` nearest codes of the latent grid.
    prior_logits:  ``[B, S, K]`` the prior's teacher-forced logits for ``codes`` read in raster order (None
                   without a prior).
    vq:            the bottleneck's :class:`~vqnat.quantization.QuantizerOutput` (loss, perplexity, ...).
    """

    logits: Tensor
    codes: Tensor
    prior_logits: Tensor | None
    vq: QuantizerOutput


class ImageVQVAE(nn.Module):
    """VQ-VAE over 8-bit images of shape ``(C, H, W)``; see the module docstring for the data flow."""

    def __init__(self, cfg: ImageVQVAEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c, h, w = image_shape
        scale = 2 ** cfg.num_downsamples
        if cfg.bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be one of {', '.join(BOTTLENECKS)}, got {cfg.bottleneck!r}")
        if cfg.num_downsamples < 1 or h % scale or w % scale:
            raise ValueError(f"num_downsamples={cfg.num_downsamples} needs image sides divisible by {scale}, "
                             f"got {h}x{w}: use fewer downsamples (28x28 allows 2 -> a 7x7 grid)")
        self.image_shape = (c, h, w)
        self.latent_grid = (h // scale, w // scale, cfg.codebook_slices)  # (h, w, Hs)
        self.codebook_size = cfg.codebook_size
        self.encoder = ConvEncoder(c, cfg.hidden_channels, cfg.residual_channels, cfg.num_residual_blocks,
                                   cfg.num_downsamples, cfg.latent_dim)
        self.quantizer = VectorQuantizer.from_config(cfg.latent_dim, cfg)
        self.decoder = ConvDecoder(c, cfg.hidden_channels, cfg.residual_channels, cfg.num_residual_blocks,
                                   cfg.num_downsamples, cfg.latent_dim)
        # the codes in raster order, slices innermost, as S positions of one code each; nothing to condition on
        self.prior = None if cfg.no_prior else LatentPrior(
            cfg.codebook_size, 1, cfg.prior_dim, cfg.prior_layers, cfg.prior_heads, 4 * cfg.prior_dim,
            cfg.prior_dropout, max_length=self.num_latent_tokens, conditional=False)

    @property
    def num_latent_tokens(self) -> int:
        """S = h * w * Hs discrete latents per image."""
        return math.prod(self.latent_grid)

    @property
    def num_subpixels(self) -> int:
        """C * H * W values per image."""
        return math.prod(self.image_shape)

    @property
    def uniform_latent_nats(self) -> float:
        """``-log p(c)`` per image under the uniform prior: S log K."""
        return self.num_latent_tokens * math.log(self.codebook_size)

    def check_images(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images must be uint8 [B, {', '.join(map(str, self.image_shape))}], got "
                             f"{images.dtype} {tuple(images.shape)}")

    def encode(self, images: Tensor) -> Tensor:
        """uint8 ``[B, C, H, W]`` -> continuous latents ``[B, h, w, D]`` (before quantization)."""
        self.check_images(images)
        x = images.float() / 127.5 - 1.0  # (B, C, H, W) in [-1, 1]
        return self.encoder(x).permute(0, 2, 3, 1)  # (B, D, h, w) -> (B, h, w, D)

    def decode(self, q: Tensor) -> Tensor:
        """Quantized latents ``[B, h, w, D]`` -> logits ``[B, 256, C, H, W]``."""
        return self.decoder(q.permute(0, 3, 1, 2))  # (B, D, h, w) in

    def forward(self, images: Tensor) -> ImageVQVAEOutput:
        """uint8 images ``[B, C, H, W]`` -> :class:`ImageVQVAEOutput` (in training mode, one codebook EM step)."""
        z = self.encode(images)  # (B, h, w, D)
        vq = self.quantizer(z)
        logits = self.decode(vq.quantized)
        prior_logits = None
        if self.prior is not None:
            prior_logits = self.prior(self.flatten_codes(vq.codes).detach().unsqueeze(-1))[:, :, 0]  # (B, S, K)
        return ImageVQVAEOutput(logits=logits, codes=vq.codes, prior_logits=prior_logits, vq=vq)

    # ------------------------------------------------------------------ codes <-> images
    def flatten_codes(self, codes: Tensor) -> Tensor:
        """``[B, h, w, Hs] -> [B, S]`` in raster order, slices innermost."""
        return codes.reshape(codes.shape[0], -1)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Codes ``[B, S]`` or ``[B, h, w, Hs]`` -> logits ``[B, 256, C, H, W]``."""
        h, w, hs = self.latent_grid
        codes = codes.reshape(-1, hs)  # (B*h*w, Hs)
        q = self.quantizer.codebook.lookup(codes)  # (B*h*w, Hs, D/Hs)
        return self.decode(q.reshape(-1, h, w, hs * q.shape[-1]))  # (B, h, w, D)

    @torch.no_grad()
    def sample_codes(self, num: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """``[num, S]`` codes drawn from the latent prior."""
        if self.prior is None:
            raise ValueError("this model was trained without a latent prior (no_prior=True): it cannot sample")
        codes = self.prior.sample(self.num_latent_tokens, batch=num, temperature=temperature, generator=generator)
        return codes[..., 0]  # (num, S)

    def prior_nll(self, codes: Tensor) -> Tensor:
        """``-log p_prior(c)`` per image in nats: codes ``[B, S]`` or ``[B, h, w, Hs]`` -> ``[B]``."""
        if self.prior is None:
            raise ValueError("this model was trained without a latent prior (no_prior=True)")
        return self.prior.nll(self.flatten_codes(codes).unsqueeze(-1))


class ImageVQVAELoss(NamedTuple):
    """The training loss of one batch and its terms, all summed over the batch, in nats.

    loss:       ``nll + subpixels * beta * commitment + prior_nll`` (divide by ``subpixels`` for a per-subpixel
                loss; the prior term trains the prior only, since its codes are stop-gradient).
    nll:        ``sum_images -log p(x | c(x))``.
    prior_nll:  ``sum_images -log p_prior(c(x))`` (zero without a prior).
    subpixels:  ``B * C * H * W``.
    """

    loss: Tensor
    nll: Tensor
    prior_nll: Tensor
    subpixels: int


def vqvae_loss(net: ImageVQVAE, out: ImageVQVAEOutput, images: Tensor) -> ImageVQVAELoss:
    """The loss of :class:`ImageVQVAE`'s output ``out`` for uint8 ``images [B, C, H, W]`` (see
    :class:`ImageVQVAELoss`); shared by the fairseq criterion and plain PyTorch loops."""
    subpixels = images.numel()
    nll = pixel_nll(out.logits, images).sum()
    prior_nll = torch.zeros((), device=nll.device)
    if out.prior_logits is not None:
        targets = net.flatten_codes(out.codes)  # (B, S)
        prior_nll = nn.functional.cross_entropy(out.prior_logits.float().transpose(1, 2), targets, reduction="sum")
    loss = nll + subpixels * out.vq.loss + prior_nll
    return ImageVQVAELoss(loss=loss, nll=nll, prior_nll=prior_nll, subpixels=subpixels)


def logits_to_pixels(logits: Tensor, mode: str = "mean", generator: torch.Generator | None = None) -> Tensor:
    """Turn decoder logits ``[B, 256, C, H, W]`` into uint8 images ``[B, C, H, W]``.

    mode: ``mean`` (expected value, rounded: smooth), ``mode`` (most likely value) or ``sample`` (an independent
    draw per subpixel: the model's actual distribution, noisy because subpixels are independent given the codes).
    """
    if mode == "mode":
        return logits.argmax(1).to(torch.uint8)
    probs = torch.softmax(logits.float(), dim=1)  # (B, 256, C, H, W)
    if mode == "mean":
        levels = torch.arange(PIXEL_LEVELS, device=logits.device, dtype=torch.float).view(1, -1, 1, 1, 1)
        return (probs * levels).sum(1).round().clamp(0, 255).to(torch.uint8)
    if mode == "sample":
        flat = probs.movedim(1, -1).reshape(-1, PIXEL_LEVELS)  # (B*C*H*W, 256)
        draws = torch.multinomial(flat, 1, generator=generator)
        b, _, c, h, w = logits.shape
        return draws.view(b, c, h, w).to(torch.uint8)
    raise ValueError(f"pixel mode must be one of {', '.join(PIXEL_MODES)}, got {mode!r}")
