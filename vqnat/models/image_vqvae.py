"""fairseq model ``vqnat_image_vqvae``: the image VQ-VAE of :mod:`vqnat.modules.image_vqvae` as a plugin.

The bottleneck options are the translation model's (:class:`~vqnat.models.quantizer_options.QuantizerOptions`:
``--bottleneck``, ``--codebook-size``, ``--codebook-slices``, ``--softmax-temperature``, ``--beta``, ...). Each
architecture applies the image model's bottleneck defaults
(:data:`~vqnat.modules.image_vqvae.IMAGE_QUANTIZER_DEFAULTS`: hard EM, K = 512, codebook decay 0.99, random codes,
no reseeding) and its sizes (:data:`~vqnat.modules.image_vqvae.ARCH_SIZES`); anything given on the command line
wins:

- ``vqnat_image_vqvae_base``: the :class:`~vqnat.modules.image_vqvae.ImageVQVAEConfig` sizes
  (128 channels, D = 64, K = 512, a 2-layer 128-wide prior).
- ``vqnat_image_vqvae_tiny``: a CPU-sized model for tests and quick experiments (32 channels, D = 16, K = 64).

``--kmeans-init`` and ``--reseed-dead-codes`` switch on what these architectures switch off (they set the shared
options ``no_kmeans_init`` and ``no_reseed_dead_codes`` to False: fairseq's ``--no-kmeans-init`` flag can only set
them to True).
"""

from dataclasses import dataclass

from fairseq.models import ARCH_CONFIG_REGISTRY, BaseFairseqModel, register_model, register_model_architecture
from torch import Tensor

from vqnat.models.quantizer_options import QuantizerOptions
from vqnat.modules.image_vqvae import (
    ARCH_SIZES,
    IMAGE_QUANTIZER_DEFAULTS,
    ImageVQVAE,
    ImageVQVAEConfig,
    ImageVQVAEOutput,
)

MODEL_NAME = "vqnat_image_vqvae"
# Switches that undo an architecture's "off" for a shared boolean option: flag -> (field, help).
SWITCH_ON_FLAGS = {
    "--kmeans-init": ("no_kmeans_init", "initialise the codes by k-means on the first batch (sets no_kmeans_init "
                                        "to False)"),
    "--reseed-dead-codes": ("no_reseed_dead_codes", "move dead codes onto encoder outputs (sets "
                                                    "no_reseed_dead_codes to False)"),
}


@dataclass
class ImageVQVAEModelConfig(QuantizerOptions, ImageVQVAEConfig):
    """The fields of :class:`ImageVQVAEConfig` (declared once, there, and in
    :class:`~vqnat.quantization.QuantizerConfig`) as fairseq options."""


@register_model(MODEL_NAME, dataclass=ImageVQVAEModelConfig)
class ImageVQVAEModel(BaseFairseqModel):
    """A thin fairseq wrapper: ``forward(images)`` returns the core's :class:`ImageVQVAEOutput`."""

    def __init__(self, cfg: ImageVQVAEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.net = ImageVQVAE(cfg, image_shape)

    @classmethod
    def add_args(cls, parser) -> None:
        """The dataclass's options (without defaults, so that the architectures can set them), plus
        :data:`SWITCH_ON_FLAGS`."""
        super().add_args(parser)
        for flag, (dest, help_text) in SWITCH_ON_FLAGS.items():
            parser.add_argument(flag, dest=dest, action="store_false", help=help_text)

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


def _architecture(name: str) -> None:
    """Register ``vqnat_image_vqvae_<name>``: :data:`IMAGE_QUANTIZER_DEFAULTS` and ``ARCH_SIZES[name]`` under what
    the command line set (the same values as ``ImageVQVAEConfig.image_defaults(name)``)."""
    def apply(args) -> None:
        for key, value in {**IMAGE_QUANTIZER_DEFAULTS, **ARCH_SIZES[name]}.items():
            setattr(args, key, getattr(args, key, value))

    apply.__name__ = f"{name}_architecture"
    register_model_architecture(MODEL_NAME, f"{MODEL_NAME}_{name}")(apply)


for _name in ARCH_SIZES:
    _architecture(_name)
# register_model made `--arch vqnat_image_vqvae` a no-op (the dataclass defaults, i.e. the translation model's
# bottleneck): it is the base architecture instead, as it was when the image config declared its own defaults.
ARCH_CONFIG_REGISTRY[MODEL_NAME] = ARCH_CONFIG_REGISTRY[f"{MODEL_NAME}_base"]
