"""The bottleneck is an fp32 island: under autocast, and in a model cast to bf16/fp16, its distances, sampling and
EMA statistics are computed and kept in fp32 (what mixed-precision training on GPUs relies on)."""

import pytest
import torch

from vqnat.quantization import VectorQuantizer

STATISTICS = ("embedding", "ema_count", "ema_sum")


def quantizer() -> VectorQuantizer:
    torch.manual_seed(0)
    # a high temperature flattens the posterior, so that distances rounded to bf16 would change the samples
    return VectorQuantizer(16, codebook_size=32, mode="soft", num_samples=4, num_slices=2, decay=0.9,
                           temperature=50.0).train()


def run(vq: VectorQuantizer, z: torch.Tensor, steps: int = 3, autocast: bool = False):
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return [vq(z) for _ in range(steps)]


def test_statistics_stay_fp32_and_match_an_fp32_run_under_bf16_autocast():
    z = torch.randn(64, 16).bfloat16()  # what an encoder running under autocast hands the bottleneck
    reference, mixed = quantizer(), quantizer()
    expected = run(reference, z.float())
    outputs = run(mixed, z, autocast=True)
    for name in STATISTICS:
        buffer = getattr(mixed.codebook, name)
        assert buffer.dtype == torch.float32, name
        assert torch.equal(buffer, getattr(reference.codebook, name)), name  # bit-identical: no bf16 inside
    for got, want in zip(outputs, expected, strict=True):
        assert got.commitment.dtype == torch.float32 and got.perplexity.dtype == torch.float32
        assert torch.equal(got.samples, want.samples) and torch.equal(got.codes, want.codes)
        assert torch.equal(got.commitment, want.commitment)
        assert got.quantized.dtype == torch.bfloat16  # the decoder gets the dtype it sent


def test_distances_are_fp32_under_autocast():
    vq = quantizer()
    z = torch.randn(64, 2, 8)
    expected = vq.codebook.distances(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = vq.codebook.distances(z.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, vq.codebook.distances(z.bfloat16().float()), rtol=0, atol=0)
    assert expected.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_casting_the_model_keeps_the_statistics_fp32(dtype):
    vq = quantizer()
    run(vq, torch.randn(64, 16))
    before = {name: getattr(vq.codebook, name).clone() for name in STATISTICS}
    vq.to(dtype)  # what fairseq's --bf16 / --fp16 do to the whole model
    for name in STATISTICS:
        assert getattr(vq.codebook, name).dtype == torch.float32, name
        assert torch.equal(getattr(vq.codebook, name), before[name]), name
    counts = vq.codebook.ema_count.clone()
    out = run(vq, torch.randn(64, 16).to(dtype), steps=1)[0]
    assert out.quantized.dtype == dtype and not torch.equal(vq.codebook.ema_count, counts)
    assert vq.codebook.num_updates.dtype == torch.long
