"""Use a trained image VQ-VAE: load its checkpoint, measure bits/dim on a split, reconstruct, sample.

The CLI (``vqnat image evaluate``, ``vqnat image reconstruct``, ``vqnat image sample``) is a thin layer over these
functions.
All images are ``uint8 [N, C, H, W]``. Evaluation runs the model in eval mode, where the bottleneck is the
deterministic nearest code for both hard and soft EM, so the bound of :mod:`vqnat.modules.image_likelihood` holds.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vqnat.checkpoint import UntrustedCheckpointError, allow_trusted_checkpoint_loading, is_own_checkpoint
from vqnat.modules.image_likelihood import bits_per_dim
from vqnat.modules.image_vqvae import ImageVQVAE, logits_to_pixels, upgrade_legacy_config, vqvae_loss
from vqnat.pipeline.safe_checkpoints import unreadable
from vqnat.quantization import usage_perplexity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedImageModel:
    """A trained VQ-VAE (in eval mode) and the dataset settings it was trained with."""

    net: ImageVQVAE
    dataset: str
    data_dir: str | None
    bottleneck: str
    arch: str


@dataclass(frozen=True)
class ImageEvalResult:
    """bits/dim and codebook usage of one split (see :func:`evaluate_images`)."""

    num_images: int
    bpd: float  # uniform prior over codes: the VQ-VAE paper's figure
    prior_bpd: float | None  # learned latent prior (tighter); None without a prior
    recon_bpd: float  # -log p(x | c) alone
    perplexity: float  # exp(entropy) of code usage over the whole split, 1..K
    used_codes: int  # codes used at least once on the split (summed over slices)
    unused_fraction: float  # 1 - used / (K * slices)
    dead_fraction: float  # the codebook's own EMA dead-code fraction at the end of training
    codebook_size: int

    def as_dict(self) -> dict:
        return asdict(self)


def load_image_model(checkpoint: str | Path, data_dir: str | None = None, device: str = "cpu",
                     trust: bool = False) -> LoadedImageModel:
    """Load a ``vqnat_image_vqvae`` checkpoint written by fairseq-train.

    A checkpoint is a pickle, and loading one can run code: it loads from a training folder of ``vqnat image
    train`` (marked by :func:`vqnat.checkpoint.mark_own_save_dir`), or from elsewhere with ``trust``.
    ``data_dir`` overrides the dataset folder saved in the checkpoint. A checkpoint that saved the bottleneck's
    options under their old image-model names loads too (:func:`~vqnat.modules.image_vqvae.upgrade_legacy_config`).
    """
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(f"{path} is a folder: name a checkpoint file in it, e.g. {path / 'checkpoint_last.pt'}")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist: train one with `vqnat image train` first")
    if not (trust or is_own_checkpoint(path)):
        raise UntrustedCheckpointError(f"{path} is a pickled checkpoint from outside a vqnat training folder, and "
                                       "loading a pickle can run code: pass --trust-checkpoint if you trust its "
                                       "source")
    from fairseq import checkpoint_utils
    from omegaconf import open_dict

    # importing vqnat.models registers the plugins fairseq needs
    from vqnat.models.image_vqvae import MODEL_NAME, ImageVQVAEModel

    allow_trusted_checkpoint_loading()
    overrides = {"data": str(data_dir)} if data_dir else None
    with warnings.catch_warnings():  # torch warns that the variable set just above is set
        warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
        try:
            state = checkpoint_utils.load_checkpoint_to_cpu(str(path), overrides)
            model_cfg = (state.get("cfg") or {}).get("model")
            if model_cfg is not None and str(model_cfg.get("_name", "")).startswith(MODEL_NAME):
                with open_dict(model_cfg):  # bottleneck options saved under their old names
                    upgrade_legacy_config(model_cfg)
            models, cfg, _task = checkpoint_utils.load_model_ensemble_and_task([str(path)], state=state)
        except RuntimeError as err:
            if "state_dict" not in str(err):
                raise unreadable(path, err) from err
            first = str(err).strip().splitlines()[-1].strip()
            raise ValueError(f"{path} does not match this version of the model ({first}); retrain it with this "
                             "version of vqnat") from err
        except (EOFError, OSError, ValueError, KeyError, AttributeError, pickle.UnpicklingError) as err:
            raise unreadable(path, err) from err
    model = models[0]
    if not isinstance(model, ImageVQVAEModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not an image VQ-VAE (vqnat_image_vqvae)")
    net = model.net.to(device).eval()
    return LoadedImageModel(net=net, dataset=str(cfg.task.dataset), data_dir=cfg.task.data,
                            bottleneck=str(cfg.model.bottleneck), arch=str(cfg.model._name))


@torch.no_grad()
def evaluate_images(net: ImageVQVAE, images: np.ndarray, batch_size: int = 256) -> ImageEvalResult:
    """bits/dim (uniform and learned prior), reconstruction bits/dim and code usage over ``images``."""
    if len(images) == 0:
        raise ValueError("no images to evaluate")
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    _, _, hs = net.latent_grid
    counts = torch.zeros(hs, net.codebook_size, device=device)  # (Hs, K)
    nll = prior_nll = 0.0
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
        out = net(batch)
        terms = vqvae_loss(net, out, batch)
        nll += terms.nll.item()
        prior_nll += terms.prior_nll.item()
        codes = out.codes.reshape(-1, hs).T  # (Hs, B*h*w)
        counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=counts.dtype))
    net.train(was_training)
    subpixels = len(images) * net.num_subpixels
    used = int((counts > 0).sum().item())
    return ImageEvalResult(
        num_images=len(images),
        bpd=bits_per_dim(nll, len(images) * net.uniform_latent_nats, subpixels),
        prior_bpd=bits_per_dim(nll, prior_nll, subpixels) if net.prior is not None else None,
        recon_bpd=bits_per_dim(nll, 0.0, subpixels),
        perplexity=float(usage_perplexity(counts)),
        used_codes=used,
        unused_fraction=1.0 - used / counts.numel(),
        dead_fraction=float(net.quantizer.codebook.dead_fraction()),
        codebook_size=net.codebook_size,
    )


@torch.no_grad()
def reconstruct_images(net: ImageVQVAE, images: np.ndarray, pixel_mode: str = "mean") -> np.ndarray:
    """Encode, quantize (nearest code) and decode: ``uint8 [N, C, H, W]`` -> ``uint8 [N, C, H, W]``."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    out = net(batch)
    net.train(was_training)
    return logits_to_pixels(out.logits, pixel_mode).cpu().numpy()


@torch.no_grad()
def sample_images(net: ImageVQVAE, num: int, temperature: float = 1.0, seed: int = 0,
                  pixel_mode: str = "mean") -> np.ndarray:
    """Draw ``num`` code grids from the latent prior and decode them: ``uint8 [num, C, H, W]``."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    codes = net.sample_codes(num, temperature, generator)  # (num, S)
    pixels = logits_to_pixels(net.decode_codes(codes), pixel_mode, generator)
    net.train(was_training)
    return pixels.cpu().numpy()
