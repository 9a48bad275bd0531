"""The codebook and its M step: EMA k-means with Laplace smoothing, distributed-safe.

Notation: H codebook slices (decomposed VQ; H = 1 is ordinary VQ), K codes per slice, Dh = dim / H.

For one step with (soft) assignment weights ``w[n, k]`` (one-hot for hard EM, averaged sampled one-hots for
soft EM) of vectors ``z[n]``::

    c_k   <- decay * c_k + (1 - decay) * sum_n w[n, k]              (EMA counts)
    s_k   <- decay * s_k + (1 - decay) * sum_n w[n, k] z[n]         (EMA sums)
    N      = sum_k c_k
    c~_k   = (c_k + eps) / (N + K eps) * N                           (Laplace smoothing)
    e_k    = s_k / c~_k                                              (codebook)

With decay = 0 and eps = 0 this is exactly one Lloyd (k-means) step; a code that has never been assigned
anything keeps its position.

The statistics start at zero, as in tensor2tensor: the ratio of two EMAs that start at zero is free of their
start-up bias, so from the first step a code sits at the (decayed) mean of what was assigned to it. (A pseudo-count
at start would anchor codes to their random initial positions for about 1 / (1 - decay) steps.) For the same
reason, code usage is judged on the bias-corrected count ``c_k / (1 - decay^t)`` after t updates: a code is dead
when that falls below ``dead_code_threshold`` vectors per step.

Precision: the codebook is an fp32 island. Its buffers stay fp32 when the model is cast to fp16 or bf16 (fairseq's
``--fp16``/``--bf16`` call ``model.half()``/``model.bfloat16()``), and every computation here casts its input to
fp32. With decay 0.999 an EMA step moves a count by about 0.1 % of itself: in bf16 (relative spacing 2^-7 = 0.8 %)
that is under half a step of the format and rounds away, so the statistics would stop moving; in fp16 (spacing
2^-10 = 0.1 %) each step would be rounded by up to half its size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from vqnat.quantization.stats import dead_code_fraction


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shifted_distances(z: Tensor, embedding: Tensor) -> Tensor:
    """Squared distances up to a per-vector constant, in fp32: ``||e_k||^2 - 2 <z, e_k>``.

    ``||z - e_k||^2 = ||z||^2 + (||e_k||^2 - 2 <z, e_k>)``; the first term is the same for every code, so it
    changes neither the nearest code nor ``softmax_k(-d_k / tau)``, and one fused matmul-add is enough.

    Args:
        z: ``[N, H, Dh]`` vectors split into H slices.
        embedding: ``[H, K, Dh]`` codes.

    Returns:
        ``[H, N, K]``.
    """
    with torch.autocast(device_type=z.device.type, enabled=False):  # autocast would run baddbmm in fp16/bf16
        z = z.float().transpose(0, 1)  # (H, N, Dh)
        embedding = embedding.float()
        e_sq = embedding.pow(2).sum(-1).unsqueeze(1)  # (H, 1, K)
        return torch.baddbmm(e_sq, z, embedding.transpose(1, 2), alpha=-2.0)  # (H, N, K)


class EMACodebook(nn.Module):
    """H codebooks of K codes of size Dh, updated by exponential moving averages (never by gradients).

    Buffers (saved in ``state_dict`` and moved by ``.to()``):
        embedding ``[H, K, Dh]``, ema_count ``[H, K]``, ema_sum ``[H, K, Dh]``, num_updates ``[]`` (long),
        initialized ``[]`` (bool).
    """

    def __init__(
        self,
        num_slices: int,
        codebook_size: int,
        slice_dim: int,
        decay: float = 0.999,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 1e-2,
        reseed_dead_codes: bool = False,
    ) -> None:
        super().__init__()
        self.num_slices = num_slices
        self.codebook_size = codebook_size
        self.slice_dim = slice_dim
        self.decay = decay
        self.eps = eps
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.reseed_dead_codes = reseed_dead_codes
        embedding = torch.randn(num_slices, codebook_size, slice_dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("ema_count", torch.zeros(num_slices, codebook_size))
        self.register_buffer("ema_sum", torch.zeros(num_slices, codebook_size, slice_dim))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.long))
        # Without k-means initialisation the random codes are ready at once.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        """``.to()``, ``.cuda()``, ``.half()``, ... as for any module, except that a cast of a floating buffer to
        fewer than 32 bits keeps it fp32 (only its device changes; see the module docstring)."""

        def keep_fp32(tensor: Tensor) -> Tensor:
            out = fn(tensor)
            if tensor.is_floating_point() and out.is_floating_point() and torch.finfo(out.dtype).bits < 32:
                return tensor.to(device=out.device, dtype=torch.float32)
            return out

        return super()._apply(keep_fp32, recurse)

    # ------------------------------------------------------------------ E step helpers
    def distances(self, z: Tensor) -> Tensor:
        """``[N, H, Dh] -> [H, N, K]`` squared distances to every code, minus ``||z||^2``."""
        return shifted_distances(z, self.embedding)

    def lookup(self, codes: Tensor) -> Tensor:
        """Embeddings of codes: ``[N, H] -> [N, H, Dh]``."""
        h_index = torch.arange(self.num_slices, device=codes.device)
        return self.embedding[h_index, codes]

    def lookup_mean(self, samples: Tensor) -> Tensor:
        """Mean embedding of sampled codes: ``[N, H, m] -> [N, H, Dh]`` (one fused gather-and-average)."""
        n, h, m = samples.shape
        offsets = torch.arange(h, device=samples.device).view(1, h, 1) * self.codebook_size
        flat = (samples + offsets).reshape(n * h, m)  # (N*H, m) rows of the (H*K, Dh) table
        table = self.embedding.reshape(h * self.codebook_size, self.slice_dim)
        return F.embedding_bag(flat, table, mode="mean").view(n, h, self.slice_dim)

    # ------------------------------------------------------------------ M step
    @torch.no_grad()
    def update(self, z: Tensor, codes: Tensor) -> Tensor:
        """One EMA (M) step from the assignments of one batch.

        Args:
            z: ``[N, H, Dh]`` encoder vectors.
            codes: ``[N, H, m]`` assigned codes; each of the m samples carries weight 1/m, so m = 1 is hard EM
                and m > 1 uses the averaged (soft) one-hots of soft EM without materialising them.

        Returns:
            ``[H, K]`` the batch's (soft) assignment counts, summed over workers when distributed.
        """
        n, h, m = codes.shape
        z = z.float()
        offsets = torch.arange(h, device=codes.device).view(1, h, 1) * self.codebook_size
        flat_codes = (codes + offsets).reshape(n * h, m)  # (N*H, m) indices into H*K rows
        z_rows = z.reshape(n * h, self.slice_dim)  # (N*H, Dh)
        counts = torch.bincount(flat_codes.reshape(-1), minlength=h * self.codebook_size).float() / m
        sums = torch.zeros(h * self.codebook_size, self.slice_dim, device=z.device)
        for i in range(m):  # m index_adds of N*H rows: no (N, H, m, Dh) copy of z
            sums.index_add_(0, flat_codes[:, i], z_rows)
        if m > 1:
            sums.div_(m)
        counts = counts.view(h, self.codebook_size)  # (H, K)
        sums = sums.view(h, self.codebook_size, self.slice_dim)  # (H, K, Dh)
        if _distributed():
            # Every worker must see the union of all batches, or the codebooks drift apart.
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self._ema_step(counts, sums)
        if self.reseed_dead_codes:
            self._reseed_dead(z)
        return counts

    def _ema_step(self, counts: Tensor, sums: Tensor) -> None:
        decay = self.decay
        self.ema_count.mul_(decay).add_(counts, alpha=1.0 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1.0 - decay)
        total = self.ema_count.sum(-1, keepdim=True)  # (H, 1)
        smoothed = (self.ema_count + self.eps) / (total + self.codebook_size * self.eps) * total  # (H, K)
        smoothed = smoothed.unsqueeze(-1)  # (H, K, 1)
        new_embedding = self.ema_sum / smoothed.clamp_min(1e-30)
        used = self.ema_count.unsqueeze(-1) > 0  # never-assigned codes keep their position
        self.embedding.copy_(torch.where(used & (smoothed > 0), new_embedding, self.embedding))
        self.num_updates += 1

    def usage(self) -> Tensor:
        """``[H, K]`` bias-corrected EMA count: about how many vectors per step each code receives (0 before any
        update)."""
        steps = int(self.num_updates)
        if steps == 0:
            return torch.zeros_like(self.ema_count)
        return self.ema_count / (1.0 - self.decay**steps)

    def dead_fraction(self) -> Tensor:
        """Fraction of codes whose usage is below the threshold; 0 before the first update (nothing judged yet)."""
        if int(self.num_updates) == 0:
            return torch.zeros((), device=self.ema_count.device)
        return dead_code_fraction(self.usage(), self.dead_code_threshold)

    @torch.no_grad()
    def _reseed_dead(self, z: Tensor) -> None:
        """Move codes whose EMA count fell below the threshold onto random encoder vectors of this batch."""
        dead = self.usage() < self.dead_code_threshold  # (H, K)
        if not bool(dead.any()):
            return
        n = z.shape[0]
        picks = torch.randint(0, n, (self.num_slices, self.codebook_size), device=z.device)  # (H, K)
        candidates = z[picks, torch.arange(self.num_slices, device=z.device).unsqueeze(1)]  # (H, K, Dh)
        if _distributed():
            dist.broadcast(candidates, src=0)  # the same replacements on every worker
        # A reseeded code starts just alive: usage = threshold, its EMA mean at the candidate.
        count = self.dead_code_threshold * (1.0 - self.decay ** int(self.num_updates))
        mask = dead.unsqueeze(-1)
        self.embedding.copy_(torch.where(mask, candidates, self.embedding))
        self.ema_sum.copy_(torch.where(mask, candidates * count, self.ema_sum))
        self.ema_count.masked_fill_(dead, count)

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def kmeans_initialize(self, z: Tensor) -> None:
        """Set the codes by k-means on the first batch ``[N, H, Dh]``: k-means++ seeding, then Lloyd steps."""
        z = z.float()
        h_index = torch.arange(self.num_slices, device=z.device).unsqueeze(1)
        embedding = torch.stack([_kmeans_plus_plus(z[:, h], self.codebook_size)
                                 for h in range(self.num_slices)])  # (H, K, Dh)
        for _ in range(self.kmeans_iters):
            codes = shifted_distances(z, embedding).argmin(-1).T  # (N, H)
            flat = (codes + h_index.T * self.codebook_size).reshape(-1)
            counts = torch.zeros(self.num_slices * self.codebook_size, device=z.device)
            counts.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float))
            sums = torch.zeros(self.num_slices * self.codebook_size, self.slice_dim, device=z.device)
            sums.index_add_(0, flat, z.reshape(-1, self.slice_dim))
            counts = counts.view(self.num_slices, self.codebook_size, 1)
            sums = sums.view(self.num_slices, self.codebook_size, self.slice_dim)
            embedding = torch.where(counts > 0, sums / counts.clamp_min(1.0), embedding)
        if _distributed():
            dist.broadcast(embedding, src=0)
        self.embedding.copy_(embedding)
        self.ema_sum.zero_()
        self.ema_count.zero_()
        self.initialized.fill_(True)


def _kmeans_plus_plus(x: Tensor, k: int) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``[N, D] -> [k, D]``.

    Each new seed is drawn with probability proportional to its squared distance to the nearest seed so far;
    when every point already coincides with a seed (k > distinct points) seeds are drawn uniformly.
    """
    n = x.shape[0]
    seeds = torch.empty(k, x.shape[1], device=x.device)
    seeds[0] = x[torch.randint(0, n, (1,), device=x.device)]
    nearest = (x - seeds[0]).pow(2).sum(-1)  # (N,)
    for i in range(1, k):
        total = nearest.sum()
        if total > 0:
            pick = torch.multinomial(nearest / total, 1)
        else:
            pick = torch.randint(0, n, (1,), device=x.device)
        seeds[i] = x[pick]
        nearest = torch.minimum(nearest, (x - seeds[i]).pow(2).sum(-1))
    return seeds
