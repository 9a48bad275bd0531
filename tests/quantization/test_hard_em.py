"""Hard EM = EMA k-means: Lloyd steps, Laplace smoothing, convergence to a k-means solution."""

import pytest
import torch
from sklearn.cluster import KMeans

from vqnat.quantization import VectorQuantizer


def gaussian_mixture(n_per: int, centers: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    points = [c + std * torch.randn(n_per, centers.shape[1], generator=g) for c in centers]
    return torch.cat(points)


def lloyd_step(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Reference Lloyd step written independently of vqnat: loops over clusters."""
    assign = torch.cdist(x, codebook).argmin(1)
    new = codebook.clone()
    for k in range(codebook.shape[0]):
        members = x[assign == k]
        if len(members):
            new[k] = members.mean(0)
    return new


def test_decay_zero_is_one_lloyd_step():
    torch.manual_seed(0)
    x = torch.randn(500, 6)
    vq = VectorQuantizer(6, codebook_size=16, decay=0.0, eps=0.0).train()
    before = vq.codebook.embedding[0].clone()
    vq(x)
    expected = lloyd_step(x, before)
    torch.testing.assert_close(vq.codebook.embedding[0], expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(before, expected)  # the step moved something


def test_empty_cluster_keeps_its_code():
    x = torch.zeros(10, 2)
    vq = VectorQuantizer(2, codebook_size=2, decay=0.0, eps=0.0).train()
    vq.codebook.embedding.copy_(torch.tensor([[[0.1, 0.0], [50.0, 50.0]]]))
    vq(x)
    torch.testing.assert_close(vq.codebook.embedding[0, 1], torch.tensor([50.0, 50.0]))
    torch.testing.assert_close(vq.codebook.embedding[0, 0], torch.tensor([0.0, 0.0]))


def test_laplace_smoothing_formula():
    torch.manual_seed(1)
    k, decay, eps = 5, 0.9, 0.3
    x = torch.randn(40, 3)
    vq = VectorQuantizer(3, codebook_size=k, decay=decay, eps=eps).train()
    cb = vq.codebook
    e0, c0, s0 = cb.embedding[0].clone(), cb.ema_count[0].clone(), cb.ema_sum[0].clone()
    assign = torch.cdist(x, e0).argmin(1)
    onehot = torch.nn.functional.one_hot(assign, k).float()
    c = decay * c0 + (1 - decay) * onehot.sum(0)
    s = decay * s0 + (1 - decay) * onehot.T @ x
    n = c.sum()
    smoothed = (c + eps) / (n + k * eps) * n
    vq(x)
    torch.testing.assert_close(cb.ema_count[0], c)
    torch.testing.assert_close(cb.ema_sum[0], s)
    torch.testing.assert_close(cb.embedding[0], s / smoothed[:, None])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converges_to_kmeans_solution(seed):
    torch.manual_seed(seed)
    centers = torch.randn(6, 4) * 4
    x = gaussian_mixture(200, centers, std=0.6, seed=seed)
    start = x[torch.randperm(len(x))[:6]]
    vq = VectorQuantizer(4, codebook_size=6, decay=0.8, eps=1e-5).train()
    vq.codebook.embedding.copy_(start[None])
    vq.codebook.ema_sum.copy_(start[None])
    for _ in range(150):
        vq(x)
    ours = vq.codebook.embedding[0]
    inertia = torch.cdist(x, ours).min(1).values.pow(2).sum().item()
    ref = KMeans(n_clusters=6, init=start.numpy(), n_init=1, tol=0).fit(x.numpy())
    # The EMA iteration reaches a k-means (Lloyd) solution as good as Lloyd's own from the same start ...
    assert inertia == pytest.approx(ref.inertia_, rel=1e-3)
    # ... which is a fixed point: one more exact Lloyd step does not move the codes.
    torch.testing.assert_close(lloyd_step(x, ours), ours, rtol=1e-3, atol=1e-3)


def test_kmeans_init_beats_random_codes():
    torch.manual_seed(3)
    x = gaussian_mixture(100, torch.randn(8, 5) * 5, std=0.5, seed=3)
    random_codes = VectorQuantizer(5, codebook_size=8)
    inertia_random = torch.cdist(x, random_codes.codebook.embedding[0]).min(1).values.pow(2).sum()
    vq = VectorQuantizer(5, codebook_size=8, kmeans_init=True).train()
    assert not bool(vq.codebook.initialized)
    vq(x)
    assert bool(vq.codebook.initialized)
    inertia = torch.cdist(x, vq.codebook.embedding[0]).min(1).values.pow(2).sum().item()
    assert inertia < 0.1 * inertia_random
    best = KMeans(n_clusters=8, n_init=10, random_state=0).fit(x.numpy()).inertia_
    assert inertia <= 1.1 * best


def test_codes_follow_their_data_from_the_first_step_at_high_decay():
    """Zero-initialised EMAs are bias-free: even at decay 0.999 one step puts a used code at its cluster mean,
    and its usage counts as alive (the bias-corrected count, not the raw EMA)."""
    torch.manual_seed(0)
    x = torch.randn(400, 3)
    vq = VectorQuantizer(3, codebook_size=8, decay=0.999, eps=0.0, dead_code_threshold=0.5).train()
    before = vq.codebook.embedding[0].clone()
    out = vq(x)
    torch.testing.assert_close(vq.codebook.embedding[0], lloyd_step(x, before), rtol=1e-4, atol=1e-4)
    used = int((vq.codebook.ema_count[0] > 0).sum())
    assert out.dead_fraction.item() == pytest.approx(1 - used / 8)
    torch.testing.assert_close(vq.codebook.usage()[0].sum(), torch.tensor(400.0))
