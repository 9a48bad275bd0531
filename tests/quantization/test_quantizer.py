"""Straight-through estimator, commitment loss, buffers, slices, codebook health and bad input."""

import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqnat.quantization import VectorQuantizer, usage_perplexity


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_straight_through_gradient(mode):
    torch.manual_seed(0)
    vq = VectorQuantizer(8, codebook_size=32, mode=mode, beta=0.0).train()
    z = torch.randn(2, 5, 8, requires_grad=True)
    out = vq(z)
    g = torch.randn_like(out.quantized)
    (out.quantized * g).sum().backward()
    torch.testing.assert_close(z.grad, g)


def test_commitment_loss_value_and_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, codebook_size=8, beta=0.25).eval()
    z = torch.randn(10, 4, requires_grad=True)
    out = vq(z)
    q = vq.codebook.embedding[0][out.codes[:, 0]]
    expected = ((z - q) ** 2).mean()
    torch.testing.assert_close(out.commitment, expected)
    torch.testing.assert_close(out.loss, 0.25 * expected)
    out.loss.backward()
    torch.testing.assert_close(z.grad, 0.25 * 2 * (z - q).detach() / z.numel())
    assert vq.codebook.embedding.grad is None  # codes move by EMA only


def test_shapes_for_any_leading_dims():
    vq = VectorQuantizer(12, codebook_size=16, num_slices=3, mode="soft", num_samples=4).train()
    out = vq(torch.randn(2, 3, 5, 12))
    assert out.quantized.shape == (2, 3, 5, 12)
    assert out.codes.shape == (2, 3, 5, 3)
    assert out.samples.shape == (2, 3, 5, 3, 4)
    assert out.loss.shape == ()


def test_slices_are_independent_codebooks():
    torch.manual_seed(0)
    sliced = VectorQuantizer(6, codebook_size=10, num_slices=2, decay=0.7).train()
    parts = [VectorQuantizer(3, codebook_size=10, decay=0.7).train() for _ in range(2)]
    for h, part in enumerate(parts):
        part.codebook.embedding.copy_(sliced.codebook.embedding[h : h + 1])
        part.codebook.ema_sum.copy_(sliced.codebook.ema_sum[h : h + 1])
    x = torch.randn(40, 6)
    out = sliced(x)
    for h, part in enumerate(parts):
        part_out = part(x[:, 3 * h : 3 * h + 3])
        torch.testing.assert_close(out.quantized[:, 3 * h : 3 * h + 3], part_out.quantized)
        assert torch.equal(out.codes[:, h], part_out.codes[:, 0])
        torch.testing.assert_close(sliced.codebook.embedding[h], part.codebook.embedding[0])


def test_no_update_in_eval_mode():
    vq = VectorQuantizer(4, codebook_size=8).eval()
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(50, 4))
    for k, v in vq.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_buffers_survive_save_and_load():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, codebook_size=8, mode="soft", kmeans_init=True).train()
    for _ in range(3):
        vq(torch.randn(64, 4))
    names = set(vq.state_dict())
    assert {"codebook.embedding", "codebook.ema_count", "codebook.ema_sum", "codebook.initialized"} <= names
    buffer = io.BytesIO()
    torch.save(vq.state_dict(), buffer)
    buffer.seek(0)
    fresh = VectorQuantizer(4, codebook_size=8, mode="soft", kmeans_init=True)
    fresh.load_state_dict(torch.load(buffer))
    for k, v in vq.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    x = torch.randn(20, 4)
    assert torch.equal(fresh.eval()(x).codes, vq.eval()(x).codes)
    moved = fresh.to(torch.float64)
    assert moved.codebook.embedding.dtype == torch.float64


def test_dead_codes_are_counted_and_reseeded():
    torch.manual_seed(0)
    x = torch.randn(256, 2) * 0.1  # all data near the origin
    far = VectorQuantizer(2, codebook_size=16, decay=0.5, dead_code_threshold=0.1).train()
    far.codebook.embedding[0, 1:] += 100.0  # 15 codes can never win
    far.codebook.ema_sum.copy_(far.codebook.embedding)
    for _ in range(10):
        out = far(x)
    assert out.dead_fraction.item() == pytest.approx(15 / 16)
    assert out.perplexity.item() == pytest.approx(1.0)

    reseeded = VectorQuantizer(2, codebook_size=16, decay=0.5, dead_code_threshold=0.1,
                               reseed_dead_codes=True).train()
    reseeded.codebook.embedding[0, 1:] += 100.0
    reseeded.codebook.ema_sum.copy_(reseeded.codebook.embedding)
    for _ in range(10):
        out = reseeded(x)
    assert out.dead_fraction.item() < 0.5
    assert out.perplexity.item() > 4.0
    assert reseeded.codebook.embedding.abs().max() < 10.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 100), min_size=2, max_size=30))
def test_perplexity_is_between_one_and_used_codes(values):
    counts = torch.tensor([values])
    if counts.sum() == 0:
        return
    used = int((counts > 0).sum())
    p = usage_perplexity(counts).item()
    assert 1.0 - 1e-4 <= p <= used + 1e-4


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"codebook_size": 0}, "codebook_size"),
        ({"num_samples": 0}, "num_samples"),
        ({"mode": "medium"}, "mode"),
        ({"temperature": 0.0}, "temperature"),
        ({"decay": 1.0}, "decay"),
        ({"num_slices": 3}, "num_slices"),
        ({"beta": -1.0}, "beta"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VectorQuantizer(8, **kwargs)


@pytest.mark.parametrize(
    ("z", "match"),
    [
        (torch.randn(3, 7), "last dimension"),
        (torch.randn(2, 8, 1), "last dimension"),  # channels-first by mistake
        (torch.tensor([[float("nan")] * 8]), "NaN"),
        (torch.tensor([[float("inf")] * 8]), "NaN or Inf"),
        (torch.zeros(3, 8, dtype=torch.long), "floating-point"),
        (torch.zeros(0, 8), "empty"),
    ],
)
def test_bad_input_is_a_clear_error(z, match):
    vq = VectorQuantizer(8, codebook_size=4).train()
    with pytest.raises(ValueError, match=match):
        vq(z)
