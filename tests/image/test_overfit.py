"""The image VQ-VAE memorises a handful of real Fashion-MNIST images, with either EM bottleneck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqnat.modules.image_vqvae import ImageVQVAE, ImageVQVAEConfig, vqvae_loss
from vqnat.pipeline.image_inference import evaluate_images, reconstruct_images


@pytest.mark.parametrize("bottleneck", ["hard", "soft"])
def test_overfits_eight_real_images(bottleneck: str, fashion_mnist) -> None:
    images = fashion_mnist.images["train"][:8]  # (8, 1, 28, 28) real images
    torch.manual_seed(0)
    cfg = ImageVQVAEConfig.image_defaults(hidden_channels=32, residual_channels=16, num_residual_blocks=1,
                                          latent_dim=16, codebook_size=32, prior_dim=32, prior_layers=1,
                                          prior_heads=2, prior_dropout=0.0, bottleneck=bottleneck,
                                          no_kmeans_init=False, codebook_decay=0.9)
    net = ImageVQVAE(cfg, (1, 28, 28))
    before = evaluate_images(net, images)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    batch = torch.from_numpy(images)
    for _ in range(200):
        terms = vqvae_loss(net, net(batch), batch)
        optimizer.zero_grad()
        (terms.loss / terms.subpixels).backward()
        optimizer.step()
    after = evaluate_images(net, images)
    assert before.recon_bpd > 7.5  # an untrained decoder is close to uniform (8 bits)
    assert after.recon_bpd < 3.6, after
    assert after.used_codes >= 8  # the codes carry the images apart, not one code for all
    assert after.prior_bpd < after.bpd  # the prior has learnt these codes better than uniform
    # Reconstructions are the images, not their mean: much closer than the mean image is.
    recon = reconstruct_images(net, images).astype(int)
    mean_image_error = np.abs(images.astype(int) - images.mean(0, keepdims=True)).mean()
    assert np.abs(recon - images).mean() < 0.6 * mean_image_error
