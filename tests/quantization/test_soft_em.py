"""Soft EM: sampling from softmax(-d / tau), averaged one-hots, limits tau -> 0 and m -> infinity."""

import torch

from vqnat.quantization import VectorQuantizer, soft_targets


def test_tau_to_zero_reproduces_hard_em():
    torch.manual_seed(0)
    x = torch.randn(300, 8)
    hard = VectorQuantizer(8, codebook_size=32, mode="hard", decay=0.9).train()
    soft = VectorQuantizer(8, codebook_size=32, mode="soft", temperature=1e-6, num_samples=10, decay=0.9).train()
    soft.load_state_dict(hard.state_dict())
    for _ in range(3):
        out_h, out_s = hard(x), soft(x)
        assert torch.equal(out_s.samples, out_s.codes.unsqueeze(-1).expand_as(out_s.samples))
        torch.testing.assert_close(out_s.quantized, out_h.quantized)
        torch.testing.assert_close(out_s.loss, out_h.loss)
    for name, buf in hard.state_dict().items():
        torch.testing.assert_close(soft.state_dict()[name], buf, msg=name)


def test_many_samples_approach_the_posterior():
    torch.manual_seed(0)
    k, tau = 6, 2.0
    x = torch.randn(4, 3)
    vq = VectorQuantizer(3, codebook_size=k, mode="soft", num_samples=40_000, temperature=tau).train()
    codes = vq.codebook.embedding[0].clone()
    out = vq(x)
    posterior = torch.softmax(-torch.cdist(x, codes).pow(2) / tau, dim=-1)
    empirical = soft_targets(out.samples, k)[:, 0]  # (4, K)
    # Binomial standard error <= 0.5 / sqrt(m) = 0.0025; allow 4 sigma.
    torch.testing.assert_close(empirical, posterior, atol=0.01, rtol=0)
    # The quantized output is the mean of the sampled codes, which approaches the posterior mean.
    torch.testing.assert_close(out.quantized, posterior @ codes, atol=0.05, rtol=0)


def test_single_sample_is_one_code():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, codebook_size=16, mode="soft", num_samples=1, temperature=5.0).train()
    codes = vq.codebook.embedding[0].clone()
    x = torch.randn(200, 4)
    out = vq(x)
    assert out.samples.shape == (200, 1, 1)
    torch.testing.assert_close(out.quantized, codes[out.samples[:, 0, 0]])
    # At a high temperature a single sample is often not the nearest code.
    assert (out.samples[:, 0, 0] != out.codes[:, 0]).float().mean() > 0.3


def test_soft_em_update_uses_averaged_one_hots():
    torch.manual_seed(0)
    k, m, decay = 8, 5, 0.5
    vq = VectorQuantizer(2, codebook_size=k, mode="soft", num_samples=m, temperature=3.0, decay=decay,
                         eps=0.0).train()
    count0, sum0 = vq.codebook.ema_count[0].clone(), vq.codebook.ema_sum[0].clone()
    x = torch.randn(50, 2)
    out = vq(x)
    w = soft_targets(out.samples[:, 0], k)  # (N, K) averaged one-hots
    torch.testing.assert_close(vq.codebook.ema_count[0], decay * count0 + (1 - decay) * w.sum(0))
    torch.testing.assert_close(vq.codebook.ema_sum[0], decay * sum0 + (1 - decay) * w.T @ x)


def test_eval_is_deterministic_unless_asked_to_sample():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, codebook_size=16, mode="soft", temperature=10.0).eval()
    x = torch.randn(30, 4)
    a, b = vq(x), vq(x)
    assert torch.equal(a.quantized, b.quantized)
    torch.testing.assert_close(a.quantized, vq.codebook.embedding[0][a.codes[:, 0]])
    vq.sample_in_eval = True
    c, d = vq(x), vq(x)
    assert not torch.equal(c.quantized, d.quantized)


def test_two_level_sampler_matches_softmax_for_blocked_codebooks():
    from vqnat.quantization.vector_quantizer import sample_from_distances

    torch.manual_seed(0)
    k, m = 130, 50_000  # 130 codes -> 5 blocks of 26
    d = torch.rand(3, k) * 8
    d[1] += 1000.0  # a per-row constant changes nothing
    expected = torch.softmax(-d / 0.7, dim=-1)
    samples = sample_from_distances(d.clone(), m, 0.7)
    assert samples.shape == (3, m) and samples.min() >= 0 and samples.max() < k
    torch.testing.assert_close(soft_targets(samples, k), expected, atol=0.006, rtol=0)
