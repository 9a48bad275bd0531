"""The fairseq side in-process: task batches, model build, and the criterion's bits/dim through fairseq metrics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from fairseq import metrics
from fairseq.dataclass.configs import FairseqConfig

from vqnat.criterions.image_bits import ImageBitsCriterion
from vqnat.models.image_vqvae import ImageVQVAEModel, ImageVQVAEModelConfig
from vqnat.tasks.image_vq import ImageVQTask, ImageVQTaskConfig


@pytest.fixture(scope="module")
def task() -> ImageVQTask:
    task = ImageVQTask.setup_task(ImageVQTaskConfig(dataset="fashion-mnist", max_eval_images=48))
    task.load_dataset("test")
    return task


@pytest.mark.parametrize("config", [ImageVQVAEModelConfig, ImageVQTaskConfig])
def test_no_option_shares_a_name_with_a_fairseq_option(config) -> None:
    """fairseq-train flattens every config into one argparse namespace: a shared name takes fairseq's value."""
    fairseq_names = {g.name for f in dataclasses.fields(FairseqConfig) if dataclasses.is_dataclass(f.type)
                     for g in dataclasses.fields(f.type)}
    mine = {f.name for f in dataclasses.fields(config)} - {"_name", "data"}
    assert not mine & fairseq_names


def test_task_batches(task: ImageVQTask) -> None:
    dataset = task.dataset("test")
    assert len(dataset) == 48 and task.image_shape == (1, 28, 28)
    batch = dataset.collater([dataset[i] for i in range(5)])
    assert batch["net_input"]["images"].shape == (5, 1, 28, 28)
    assert batch["net_input"]["images"].dtype == torch.uint8
    assert batch["ntokens"] == 5 * 784 and batch["nsentences"] == 5


def test_criterion_reports_exact_bits_per_dim_for_a_uniform_decoder(task: ImageVQTask) -> None:
    torch.manual_seed(0)
    cfg = ImageVQVAEModelConfig.image_defaults(hidden_channels=16, residual_channels=8, num_residual_blocks=1,
                                               latent_dim=8, codebook_size=32, prior_dim=16, prior_layers=1,
                                               prior_heads=2)
    model = ImageVQVAEModel.build_model(cfg, task).eval()
    last = model.net.decoder.net[-1]  # logits 0 everywhere: uniform over the 256 values of each subpixel
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    criterion = ImageBitsCriterion(task)
    dataset = task.dataset("test")
    logs = []
    for start in (0, 16, 32):  # three batches, summed the way fairseq sums logging outputs
        sample = dataset.collater([dataset[i] for i in range(start, start + 16)])
        with torch.no_grad():
            loss, sample_size, log = criterion(model, sample)
        assert sample_size == 16 * 784
        logs.append(log)
    with metrics.aggregate(new_root=True) as agg:
        ImageBitsCriterion.reduce_metrics(logs)
        values = agg.get_smoothed_values()
    assert values["recon_bpd"] == pytest.approx(8.0, abs=1e-4)
    assert values["bpd"] == pytest.approx(8.0 + 49 * math.log2(32) / 784, abs=1e-4)  # 8 + 0.3125
    assert values["prior_bpd"] > 8.0
    assert 1.0 <= values["perplexity"] <= 32 and 0.0 <= values["dead_fraction"] <= 1.0
