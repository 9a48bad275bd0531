"""The VQ bottleneck: hard EM (EMA k-means) or soft EM (Monte-Carlo EM), straight-through, commitment loss.

Hard EM (E step = nearest code)::

    k*(z) = argmin_k ||z - e_k||^2,        q(z) = e_{k*}

Soft EM (E step = m samples from the posterior over codes)::

    p(k | z) = softmax_k(-||z - e_k||^2 / tau)
    k_1..k_m ~ p(. | z),                   q(z) = (1/m) sum_i e_{k_i}

and the M step (:meth:`EMACodebook.update`) uses the averaged one-hots (1/m) sum_i onehot(k_i).
The decoder sees ``z + sg(q - z)`` (straight-through: d loss/d z = d loss/d q), and the encoder is pulled
towards its codes by the commitment loss ``beta * ||z - sg(q)||^2`` (mean over elements).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from vqnat.quantization.codebook import EMACodebook
from vqnat.quantization.config import BOTTLENECKS, QuantizerConfig
from vqnat.quantization.stats import usage_perplexity

_DEFAULTS = QuantizerConfig()  # the numeric defaults below are read from the config, declared there once


class QuantizerOutput(NamedTuple):
    """What :class:`VectorQuantizer` returns for an input ``[..., D]`` with H slices and m samples.

    quantized:   ``[..., D]`` straight-through output to feed the decoder.
    codes:       ``[..., H]`` nearest codes (hard assignments; the argmax of the soft posterior).
    samples:     ``[..., H, m]`` the codes drawn by soft EM (``codes[..., None]`` for hard EM); their averaged
                 one-hots are the soft targets (see :func:`soft_targets`).
    loss:        scalar, ``beta * commitment``: add it to the training loss.
    commitment:  scalar, ``mean ||z - sg(q)||^2``.
    perplexity:  scalar, exp(entropy) of this batch's code usage (1..K).
    dead_fraction: scalar, fraction of codes whose EMA count is below the dead-code threshold.
    """

    quantized: Tensor
    codes: Tensor
    samples: Tensor
    loss: Tensor
    commitment: Tensor
    perplexity: Tensor
    dead_fraction: Tensor


def soft_targets(samples: Tensor, codebook_size: int) -> Tensor:
    """Averaged one-hots of sampled codes: ``[..., m] -> [..., K]`` (rows sum to 1)."""
    m = samples.shape[-1]
    out = torch.zeros(*samples.shape[:-1], codebook_size, device=samples.device)
    return out.scatter_add_(-1, samples, torch.full(samples.shape, 1.0 / m, device=samples.device))


class VectorQuantizer(nn.Module):
    """EM-trained vector quantizer for tensors ``[..., dim]``.

    Models build it from their options with :meth:`from_config`. Called directly, it is plain hard EM from random
    codes (``mode="hard"``, no k-means init, no reseeding); the sizes and rates default to :class:`QuantizerConfig`'s.

    Args:
        dim: size of the last input dimension.
        codebook_size: K codes per slice (paper: 2^12).
        mode: ``"hard"`` (EMA k-means) or ``"soft"`` (sampled soft EM).
        num_samples: m, samples per vector for soft EM (paper: 10).
        temperature: tau in ``softmax(-d / tau)`` for soft EM.
        decay: EMA decay of counts and sums (paper: 0.999).
        eps: Laplace smoothing of the counts (paper: 1e-5).
        beta: commitment-loss weight (paper: 0.25).
        num_slices: H; the vector is split into H slices each with its own codebook (decomposed VQ).
        kmeans_init: initialise the codes by k-means on the first training batch.
        dead_code_threshold: a code whose EMA count falls below this is "dead" (logged; optionally reseeded).
        reseed_dead_codes: move dead codes onto random encoder outputs of the current batch.
        sample_in_eval: draw soft-EM samples in eval mode too (default: deterministic nearest code).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = _DEFAULTS.codebook_size,
        mode: Literal["hard", "soft"] = "hard",
        num_samples: int = _DEFAULTS.num_samples,
        temperature: float = _DEFAULTS.softmax_temperature,
        decay: float = _DEFAULTS.codebook_decay,
        eps: float = _DEFAULTS.codebook_eps,
        beta: float = _DEFAULTS.beta,
        num_slices: int = _DEFAULTS.codebook_slices,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 1e-2,
        reseed_dead_codes: bool = False,
        sample_in_eval: bool = False,
    ) -> None:
        super().__init__()
        _check(dim >= 1, "dim", f"must be >= 1, got {dim}")
        _check(codebook_size >= 1, "codebook_size", f"must be >= 1, got {codebook_size}")
        _check(mode in BOTTLENECKS, "mode", f"must be one of {', '.join(BOTTLENECKS)}, got {mode!r}")
        _check(num_samples >= 1, "num_samples", f"must be >= 1, got {num_samples}")
        _check(temperature > 0, "temperature", f"must be > 0, got {temperature}")
        _check(0.0 <= decay < 1.0, "decay", f"must be in [0, 1), got {decay}")
        _check(eps >= 0, "eps", f"must be >= 0, got {eps}")
        _check(beta >= 0, "beta", f"must be >= 0, got {beta}")
        _check(num_slices >= 1 and dim % num_slices == 0, "num_slices",
               f"must be >= 1 and divide dim={dim}, got {num_slices}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.mode = mode
        self.num_samples = num_samples
        self.temperature = temperature
        self.beta = beta
        self.num_slices = num_slices
        self.sample_in_eval = sample_in_eval
        self.codebook = EMACodebook(
            num_slices, codebook_size, dim // num_slices, decay=decay, eps=eps, kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters, dead_code_threshold=dead_code_threshold,
            reseed_dead_codes=reseed_dead_codes,
        )

    @classmethod
    def from_config(cls, dim: int, cfg: QuantizerConfig) -> VectorQuantizer:
        """The bottleneck a model's options describe: ``cfg`` is a :class:`QuantizerConfig`, or any config with its
        fields (the models' fairseq configs inherit them)."""
        return cls(
            dim, cfg.codebook_size, mode=cfg.bottleneck, num_samples=cfg.num_samples,
            temperature=cfg.softmax_temperature, decay=cfg.codebook_decay, eps=cfg.codebook_eps, beta=cfg.beta,
            num_slices=cfg.codebook_slices, kmeans_init=not cfg.no_kmeans_init,
            reseed_dead_codes=not cfg.no_reseed_dead_codes)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, codebook_size={self.codebook_size}, mode={self.mode}, "
                f"num_samples={self.num_samples}, num_slices={self.num_slices}, beta={self.beta}")

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize ``z: [..., dim]``; in training mode also run one EMA update of the codebook."""
        self._validate(z)
        lead = z.shape[:-1]
        h = self.num_slices
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = z.float().reshape(-1, h, self.dim // h)  # (N, H, Dh)
            if self.training and not bool(self.codebook.initialized):
                self.codebook.kmeans_initialize(flat.detach())
            distances = self.codebook.distances(flat.detach())  # (H, N, K), minus ||z||^2
            nearest, codes = distances.min(-1)  # (H, N) each
            codes = codes.T  # (N, H)
            if self.mode == "soft" and (self.training or self.sample_in_eval):
                samples = sample_from_distances(distances, self.num_samples, self.temperature,
                                                row_min=nearest)  # (H, N, m)
                samples = samples.permute(1, 0, 2)  # (N, H, m)
                q = self.codebook.lookup_mean(samples)  # (N, H, Dh)
            else:
                samples = codes.unsqueeze(-1)  # (N, H, 1)
                q = self.codebook.lookup(codes)  # (N, H, Dh)
            if self.training:
                counts = self.codebook.update(flat.detach(), samples)  # (H, K)
            else:
                counts = torch.zeros(h, self.codebook_size, device=z.device).scatter_add_(
                    1, codes.T, torch.ones_like(codes.T, dtype=torch.float))
            commitment = (flat - q.detach()).pow(2).mean()
            quantized = flat + (q - flat).detach()  # straight-through
        return QuantizerOutput(
            quantized=quantized.reshape(*lead, self.dim).to(z.dtype),
            codes=codes.reshape(*lead, h),
            samples=samples.reshape(*lead, h, samples.shape[-1]),
            loss=self.beta * commitment,
            commitment=commitment,
            perplexity=usage_perplexity(counts),
            dead_fraction=self.codebook.dead_fraction(),
        )

    def _validate(self, z: Tensor) -> None:
        if not isinstance(z, Tensor):
            raise ValueError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have last dimension dim={self.dim}, got shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise ValueError(f"z must be a floating-point tensor, got dtype {z.dtype}")
        if z.numel() == 0:
            raise ValueError("z is empty: nothing to quantize")
        if not bool(torch.isfinite(z).all()):
            raise ValueError("z contains NaN or Inf: check the encoder (learning rate, fp16 overflow)")


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{name} {message}")


def sample_from_distances(
    distances: Tensor, num_samples: int, temperature: float, row_min: Tensor | None = None
) -> Tensor:
    """Draw m codes per row from ``softmax(-d / tau)``: ``[..., K] -> [..., m]`` (consumes ``distances``).

    Two-level inverse-CDF sampling: the K codes are grouped into blocks of b; a sample first picks a block
    from the cumulative block masses, then a code inside it. This costs one exp and one block sum over the K
    distances plus m searches over b codes, never a cumulative sum over all K nor m one-hot tensors of size K.
    Any per-row constant added to ``d`` leaves the distribution unchanged. ``row_min`` (``[...]``), when the
    caller already has it, saves one pass over the distances.
    """
    *lead, k = distances.shape
    w = distances.reshape(-1, k)  # (R, K)
    rows = w.shape[0]
    w_min = (w.min(-1).values if row_min is None else row_min.reshape(-1)).unsqueeze(1)  # (R, 1)
    # exp(-80) ~ 2e-35 is still a normal float: clamping there keeps denormals (very slow on CPUs) out of the
    # sums below, and changes each probability by less than K * 2e-35.
    w = torch.add(w_min / temperature, w, alpha=-1.0 / temperature, out=w)  # (R, K) (d_min - d) / tau
    w = w.clamp_min_(-80.0).exp_()  # unnormalised probabilities, max 1
    block = max(b for b in range(1, 65) if k % b == 0)
    blocks = w.view(rows, k // block, block)  # (R, nb, b)
    block_cdf = blocks.sum(-1).cumsum_(-1)  # (R, nb)
    u = torch.rand(rows, num_samples, device=w.device) * block_cdf[:, -1:]  # (R, m)
    chosen = torch.searchsorted(block_cdf, u, right=True).clamp_max_(k // block - 1)  # (R, m)
    before = torch.where(chosen > 0, block_cdf.gather(1, (chosen - 1).clamp_min(0)), torch.zeros_like(u))
    row_index = torch.arange(rows, device=w.device).unsqueeze(1)
    inner_cdf = blocks[row_index, chosen].cumsum_(-1)  # (R, m, b)
    # Rounding may leave the residual a hair above the block's mass: keep it inside the block.
    residual = torch.minimum(u - before, inner_cdf[..., -1] * (1 - 1e-6))
    inner = torch.searchsorted(inner_cdf, residual.unsqueeze(-1), right=True).squeeze(-1).clamp_max_(block - 1)
    return (chosen * block + inner).view(*lead, num_samples)
