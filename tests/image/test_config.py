"""The image VQ-VAE takes its bottleneck options from QuantizerConfig (the translation model's names); its own
defaults come from its architectures, from ``ImageVQVAEConfig.image_defaults`` and, for old checkpoints, from the
one old -> new name mapping."""

from __future__ import annotations

import dataclasses

import pytest

from vqnat.modules.image_vqvae import (
    IMAGE_QUANTIZER_DEFAULTS,
    LEGACY_QUANTIZER_NAMES,
    ImageVQVAE,
    ImageVQVAEConfig,
    upgrade_legacy_config,
)
from vqnat.pipeline.fairseq_run import USER_DIR
from vqnat.quantization import QuantizerConfig

QUANTIZER_FIELDS = {f.name for f in dataclasses.fields(QuantizerConfig)}
# What the image architectures gave before the image config took QuantizerConfig's names (written out, not
# computed from the code under test): hard EM, K = 512 (tiny: 64), decay 0.99, random codes, no reseeding.
IMAGE_BOTTLENECK = {"bottleneck": "hard", "codebook_size": 512, "codebook_slices": 1, "num_samples": 10,
                    "softmax_temperature": 1.0, "codebook_decay": 0.99, "codebook_eps": 1e-5, "beta": 0.25,
                    "no_kmeans_init": True, "no_reseed_dead_codes": True}
BASE = {**IMAGE_BOTTLENECK, "hidden_channels": 128, "latent_dim": 64, "prior_dim": 128}
TINY = {**IMAGE_BOTTLENECK, "codebook_size": 64, "hidden_channels": 32, "latent_dim": 16, "prior_dim": 64}
# --arch -> (the name image_defaults takes, the expected values); the bare model name is the base architecture.
ARCHS = {"vqnat_image_vqvae_base": ("base", BASE), "vqnat_image_vqvae_tiny": ("tiny", TINY),
         "vqnat_image_vqvae": ("base", BASE)}
# A model config as an image checkpoint saved it before the rename (vqnat_image_vqvae_tiny, --bottleneck soft
# --codebook-decay 0.95 --soft-temperature 2.0 --num-slices 2 --kmeans-init).
LEGACY_SAVED = {"hidden_channels": 32, "residual_channels": 16, "num_residual_blocks": 1, "num_downsamples": 2,
                "latent_dim": 16, "codebook_size": 64, "num_slices": 2, "bottleneck": "soft", "num_samples": 10,
                "soft_temperature": 2.0, "codebook_decay": 0.95, "codebook_eps": 1e-05, "commitment_beta": 0.25,
                "kmeans_init": True, "reseed_dead_codes": False, "prior_dim": 64, "prior_layers": 2,
                "prior_heads": 2, "prior_dropout": 0.1, "no_prior": False, "_name": "vqnat_image_vqvae_tiny"}


def test_the_image_config_declares_no_bottleneck_option_of_its_own() -> None:
    assert issubclass(ImageVQVAEConfig, QuantizerConfig)
    assert not set(ImageVQVAEConfig.__annotations__) & QUANTIZER_FIELDS
    from vqnat.models.image_vqvae import ImageVQVAEModelConfig
    from vqnat.models.quantizer_options import QuantizerOptions

    assert issubclass(ImageVQVAEModelConfig, QuantizerOptions)  # --bottleneck's choices, as in the translation model
    assert not set(ImageVQVAEModelConfig.__dict__.get("__annotations__", {})) & QUANTIZER_FIELDS
    assert set(IMAGE_QUANTIZER_DEFAULTS) <= QUANTIZER_FIELDS


def parsed_model_cfg(arch: str, *extra: str):
    """The model config fairseq-train builds from its command line (the same parser and conversion)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = ["data", "--user-dir", USER_DIR, "--task", "vqnat_image", "--dataset", "fashion-mnist", "--arch", arch,
            "--criterion", "vqnat_image_bits", "--optimizer", "adam", "--lr", "1e-3", *extra]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    return convert_namespace_to_omegaconf(args).model


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_each_architecture_gives_the_image_defaults(arch: str) -> None:
    preset, expected = ARCHS[arch]
    model_cfg = parsed_model_cfg(arch)
    assert {key: model_cfg[key] for key in expected} == expected
    plain = dataclasses.asdict(ImageVQVAEConfig.image_defaults(preset))  # the same config without fairseq
    assert {key: model_cfg[key] for key in plain} == plain


def test_the_command_line_wins_over_the_architecture() -> None:
    model_cfg = parsed_model_cfg("vqnat_image_vqvae_tiny", "--bottleneck", "soft", "--codebook-size", "7",
                                 "--codebook-slices", "2", "--softmax-temperature", "2.0", "--beta", "0.5",
                                 "--kmeans-init", "--reseed-dead-codes", "--hidden-channels", "8")
    assert model_cfg.bottleneck == "soft" and model_cfg.codebook_size == 7 and model_cfg.codebook_slices == 2
    assert model_cfg.softmax_temperature == 2.0 and model_cfg.beta == 0.5 and model_cfg.hidden_channels == 8
    assert model_cfg.no_kmeans_init is False and model_cfg.no_reseed_dead_codes is False
    assert parsed_model_cfg("vqnat_image_vqvae_base", "--no-kmeans-init").no_kmeans_init is True


def test_image_defaults_build_the_image_bottleneck() -> None:
    net = ImageVQVAE(ImageVQVAEConfig.image_defaults("tiny", bottleneck="soft", codebook_slices=2), (1, 28, 28))
    vq = net.quantizer
    assert (vq.mode, vq.codebook_size, vq.num_slices, vq.codebook.decay) == ("soft", 64, 2, 0.99)
    assert bool(vq.codebook.initialized) and not vq.codebook.reseed_dead_codes  # random codes, no reseeding
    assert net.latent_grid == (7, 7, 2)
    with pytest.raises(ValueError, match="unknown arch 'huge'"):
        ImageVQVAEConfig.image_defaults("huge")


def test_a_legacy_config_gets_the_shared_names() -> None:
    upgraded = upgrade_legacy_config(dict(LEGACY_SAVED))
    assert not set(upgraded) & set(LEGACY_QUANTIZER_NAMES)
    assert upgraded["codebook_slices"] == 2 and upgraded["softmax_temperature"] == 2.0 and upgraded["beta"] == 0.25
    assert upgraded["no_kmeans_init"] is False and upgraded["no_reseed_dead_codes"] is True  # inverted booleans
    assert {k: v for k, v in upgraded.items() if k in LEGACY_SAVED} == {
        k: v for k, v in LEGACY_SAVED.items() if k not in LEGACY_QUANTIZER_NAMES}
    config = ImageVQVAEConfig(**{k: v for k, v in upgraded.items() if k != "_name"})  # every name is a field
    assert config.codebook_slices == 2
    assert upgrade_legacy_config(dict(upgraded)) == upgraded  # a current config is left as it is
