"""fairseq model ``vqnat_image_vqvae``: the image VQ-VAE of :mod:`vqnat.modules.image_vqvae` as a plugin.

Architectures (presets only set sizes; anything given on the command line wins):

- ``vqnat_image_vqvae_base``: the :class:`~vqnat.modules.image_vqvae.ImageVQVAEConfig` defaults
  (128 channels, D = 64, K = 512, a 2-layer 128-wide prior).
- ``vqnat_image_vqvae_tiny``: a CPU-sized model for tests and quick experiments (32 channels, D = 16, K = 64).
"""

from dataclasses import dataclass

from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from torch import Tensor

from vqnat.modules.image_vqvae import ImageVQVAE, ImageVQVAEConfig, ImageVQVAEOutput

MODEL_NAME = "vqnat_image_vqvae"


@dataclass
class ImageVQVAEModelConfig(FairseqDataclass, ImageVQVAEConfig):
    """The fields of :class:`ImageVQVAEConfig` (declared once, there) as fairseq options."""


@register_model(MODEL_NAME, dataclass=ImageVQVAEModelConfig)
class ImageVQVAEModel(BaseFairseqModel):
    """A thin fairseq wrapper: ``forward(images)`` returns the core's :class:`ImageVQVAEOutput`."""

    def __init__(self, cfg: ImageVQVAEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.net = ImageVQVAE(cfg, image_shape)

    @classmethod
    def build_model(cls, cfg: ImageVQVAEModelConfig, task) -> "ImageVQVAEModel":
        image_shape = getattr(task, "image_shape", None)
        if image_shape is None:
            raise ValueError(f"{MODEL_NAME} needs an image task (--task vqnat_image), got {type(task).__name__}")
        return cls(cfg, image_shape)

    def forward(self, images: Tensor) -> ImageVQVAEOutput:
        """uint8 ``[B, C, H, W]`` -> logits ``[B, 256, C, H, W]``, codes, prior logits, bottleneck output."""
        return self.net(images)

    def max_positions(self) -> None:
        return None


@register_model_architecture(MODEL_NAME, "vqnat_image_vqvae_base")
def base_architecture(args) -> None:
    """The dataclass defaults: nothing to set."""


@register_model_architecture(MODEL_NAME, "vqnat_image_vqvae_tiny")
def tiny_architecture(args) -> None:
    args.hidden_channels = getattr(args, "hidden_channels", 32)
    args.residual_channels = getattr(args, "residual_channels", 16)
    args.num_residual_blocks = getattr(args, "num_residual_blocks", 1)
    args.latent_dim = getattr(args, "latent_dim", 16)
    args.codebook_size = getattr(args, "codebook_size", 64)
    args.prior_dim = getattr(args, "prior_dim", 64)
    args.prior_layers = getattr(args, "prior_layers", 2)
    args.prior_heads = getattr(args, "prior_heads", 2)
