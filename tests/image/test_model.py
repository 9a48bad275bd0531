"""The image VQ-VAE's shapes (28x28 greyscale, 32x32 RGB), its prior, and bits/dim computed exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqnat.modules.image_likelihood import bits_per_dim, pixel_nll
from vqnat.modules.image_vqvae import ImageVQVAE, ImageVQVAEConfig, logits_to_pixels
from vqnat.pipeline.image_inference import evaluate_images, reconstruct_images, sample_images

TINY = dict(hidden_channels=16, residual_channels=8, num_residual_blocks=1, latent_dim=8, codebook_size=32,
            prior_dim=16, prior_layers=1, prior_heads=2)


def tiny_model(shape: tuple[int, int, int], **overrides) -> ImageVQVAE:
    torch.manual_seed(0)
    return ImageVQVAE(ImageVQVAEConfig.image_defaults(**{**TINY, **overrides}), shape)


@pytest.mark.parametrize("shape, grid", [((1, 28, 28), (7, 7)), ((3, 32, 32), (8, 8))])
@pytest.mark.parametrize("bottleneck", ["hard", "soft"])
def test_shapes(shape, grid, bottleneck) -> None:
    model = tiny_model(shape, bottleneck=bottleneck, codebook_slices=2)
    images = torch.randint(0, 256, (3, *shape), dtype=torch.uint8)
    out = model(images)
    c, h, w = shape
    assert out.logits.shape == (3, 256, c, h, w)
    assert out.codes.shape == (3, *grid, 2)
    assert model.num_latent_tokens == grid[0] * grid[1] * 2
    assert out.prior_logits.shape == (3, model.num_latent_tokens, 32)
    assert out.vq.samples.shape[-1] == (10 if bottleneck == "soft" else 1)
    assert model.decode_codes(out.codes).shape == (3, 256, c, h, w)
    codes = model.sample_codes(2)
    assert codes.shape == (2, model.num_latent_tokens) and int(codes.max()) < 32
    assert sample_images(model, 2).shape == (2, *shape)
    assert reconstruct_images(model, images.numpy()).dtype == np.uint8


def test_bad_inputs_are_rejected_with_the_fix() -> None:
    model = tiny_model((1, 28, 28))
    with pytest.raises(ValueError, match=r"uint8 \[B, 1, 28, 28\]"):
        model(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"uint8 \[B, 1, 28, 28\]"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny_model((1, 28, 28), num_downsamples=3)
    with pytest.raises(ValueError, match="bottleneck"):
        tiny_model((1, 28, 28), bottleneck="medium")
    with pytest.raises(ValueError, match="without a latent prior"):
        tiny_model((1, 28, 28), no_prior=True).sample_codes(1)


def uniform_decoder(model: ImageVQVAE) -> ImageVQVAE:
    """Zero the decoder's last layer: every subpixel gets logits 0, i.e. a uniform distribution over 256 values."""
    last = model.decoder.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return model


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_uniform_decoder_gives_exactly_8_bits_plus_the_latent_term(shape, fashion_mnist, cifar10_real) -> None:
    model = uniform_decoder(tiny_model(shape, codebook_slices=2)).eval()
    images = fashion_mnist.images["test"][:40] if shape[0] == 1 else cifar10_real[0]
    result = evaluate_images(model, images, batch_size=16)
    s, k, d = model.num_latent_tokens, 32, math.prod(shape)  # S = h*w*2 tokens of K = 32 codes, D subpixels
    assert result.recon_bpd == pytest.approx(8.0, abs=1e-5)  # float32 sums
    assert result.bpd == pytest.approx(8.0 + s * math.log2(k) / d, abs=1e-5)  # 28x28: 8 + 98*5/784 = 8.625
    assert result.prior_bpd > result.recon_bpd
    # The learned-prior figure is the prior's own NLL of the codes: check it against the prior directly.
    codes = model.flatten_codes(model(torch.from_numpy(images)).codes)
    prior_bits = model.prior_nll(codes).sum().item() / math.log(2)
    assert result.prior_bpd == pytest.approx(8.0 + prior_bits / (len(images) * d), rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 5.0))
def test_pixel_nll_of_a_known_categorical(seed: int, scale: float) -> None:
    """Same distribution p at every subpixel: the NLL is exactly -sum_x log p(x)."""
    gen = torch.Generator().manual_seed(seed)
    level_logits = torch.randn(256, generator=gen, dtype=torch.float64) * scale
    log_p = torch.log_softmax(level_logits, 0)
    images = torch.randint(0, 256, (2, 3, 4, 4), generator=gen, dtype=torch.uint8)
    logits = level_logits.float().view(1, 256, 1, 1, 1).expand(2, 256, 3, 4, 4)
    expected = -log_p[images.long()].flatten(1).sum(-1)
    torch.testing.assert_close(pixel_nll(logits, images).double(), expected, rtol=1e-5, atol=1e-3)


def test_bits_per_dim_formula() -> None:
    assert bits_per_dim(784 * math.log(256), 0.0, 784) == pytest.approx(8.0)
    assert bits_per_dim(0.0, 49 * math.log(64), 784) == pytest.approx(49 * 6 / 784)
    with pytest.raises(ValueError):
        bits_per_dim(1.0, 0.0, 0)


def test_logits_to_pixels_modes() -> None:
    logits = torch.full((1, 256, 1, 2, 2), -1e4)
    logits[:, 7] = 0.0  # all mass on the value 7
    for mode in ("mean", "mode", "sample"):
        assert logits_to_pixels(logits, mode).tolist() == [[[[7, 7], [7, 7]]]]
    uniform = torch.zeros(1, 256, 1, 1, 1)
    assert int(logits_to_pixels(uniform, "mean")) == 128  # round(127.5) to even
    with pytest.raises(ValueError, match="pixel mode"):
        logits_to_pixels(uniform, "median")


def test_prior_is_causal() -> None:
    """Changing code t must not change the prior's predictions at positions <= t."""
    model = tiny_model((1, 28, 28)).eval()
    codes = torch.randint(0, 32, (2, model.num_latent_tokens))
    changed = codes.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 32
    a, b = model.prior(codes.unsqueeze(-1)), model.prior(changed.unsqueeze(-1))  # (B, S, 1, K)
    torch.testing.assert_close(a[:, :21], b[:, :21])
    assert not torch.allclose(a[:, 21:], b[:, 21:])
