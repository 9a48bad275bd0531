"""Convolutional encoder and decoder of the image VQ-VAE (van den Oord et al. 2017, as used by Roy et al. 2018).

Encoder: ``num_downsamples`` convolutions of kernel 4, stride 2, padding 1 (each halves an even side exactly:
28 -> 14 -> 7, 32 -> 16 -> 8), a 3x3 convolution, residual blocks, and a 1x1 projection to the latent size D.
Decoder: the mirror image, with transposed convolutions (kernel 4, stride 2, padding 1: 7 -> 14 -> 28) and a 1x1
convolution to 256 logits per subpixel (a categorical distribution over the 8-bit value).

Shapes: images ``[B, C, H, W]``, latent grid ``[B, D, h, w]`` with ``h = H / 2^n``, ``w = W / 2^n``.
"""

from __future__ import annotations

from torch import Tensor, nn

PIXEL_LEVELS = 256  # 8-bit subpixels


class ResidualBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``: ``[B, ch, h, w] -> [B, ch, h, w]``."""

    def __init__(self, channels: int, inner_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, inner_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(inner_channels, channels, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _stage_channels(hidden: int, num_downsamples: int) -> list[int]:
    """Channels after each resolution stage, narrowest at full resolution: e.g. 2 stages -> [hidden/2, hidden]."""
    return [max(1, hidden // 2 ** (num_downsamples - 1 - i)) for i in range(num_downsamples)]


class ConvEncoder(nn.Module):
    """``[B, C, H, W]`` (pixels scaled to [-1, 1]) -> ``[B, D, H/2^n, W/2^n]``."""

    def __init__(self, in_channels: int, hidden: int, residual_channels: int, num_residual_blocks: int,
                 num_downsamples: int, latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for ch in _stage_channels(hidden, num_downsamples):
            layers += [nn.Conv2d(prev, ch, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            prev = ch
        layers.append(nn.Conv2d(prev, hidden, kernel_size=3, padding=1))
        layers += [ResidualBlock(hidden, residual_channels) for _ in range(num_residual_blocks)]
        layers += [nn.ReLU(), nn.Conv2d(hidden, latent_dim, kernel_size=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """``[B, D, h, w]`` -> logits ``[B, 256, C, h*2^n, w*2^n]`` (class dim second, as ``F.cross_entropy`` wants)."""

    def __init__(self, out_channels: int, hidden: int, residual_channels: int, num_residual_blocks: int,
                 num_downsamples: int, latent_dim: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        layers: list[nn.Module] = [nn.Conv2d(latent_dim, hidden, kernel_size=3, padding=1)]
        layers += [ResidualBlock(hidden, residual_channels) for _ in range(num_residual_blocks)]
        prev = hidden
        for ch in reversed(_stage_channels(hidden, num_downsamples)):
            layers += [nn.ReLU(), nn.ConvTranspose2d(prev, ch, kernel_size=4, stride=2, padding=1)]
            prev = ch
        layers += [nn.ReLU(), nn.Conv2d(prev, PIXEL_LEVELS * out_channels, kernel_size=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, q: Tensor) -> Tensor:
        logits = self.net(q)  # (B, 256*C, H, W), channel index = level * C + c
        b, _, h, w = logits.shape
        return logits.view(b, PIXEL_LEVELS, self.out_channels, h, w)  # (B, 256, C, H, W)
