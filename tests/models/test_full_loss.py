"""``full_loss``, the checkpoint-selection metric: the whole objective with the prior at weight 1, also while
``loss`` leaves the prior out (its warm-up), and under bf16 autocast the bottleneck's statistics stay fp32."""

import torch

from tests.models.conftest import encode_batch, tiny_model
from vqnat.criterions.latent_transformer_loss import latent_terms


def batch(real_pairs, word_dict):
    pairs = real_pairs[:6]
    src, src_len = encode_batch([s for s, _ in pairs], word_dict)
    tgt, _ = encode_batch([t for _, t in pairs], word_dict)
    return src, src_len, tgt


def test_full_loss_counts_the_prior_during_its_warm_up(real_pairs, word_dict):
    torch.manual_seed(0)
    src, src_len, tgt = batch(real_pairs, word_dict)
    model = tiny_model(word_dict, prior_warmup_updates=100).eval()
    model.set_num_updates(10)  # inside the warm-up: `loss` has no prior term
    terms = latent_terms(model(src, src_len, tgt), label_smoothing=0.0)
    commitment = model.cfg.beta * terms["commitment"]
    torch.testing.assert_close(terms["loss"], terms["recon_loss"] + commitment)
    torch.testing.assert_close(terms["full_loss"], terms["recon_loss"] + terms["prior_loss"] + commitment)
    model.set_num_updates(100)  # after it the two agree
    terms = latent_terms(model(src, src_len, tgt), label_smoothing=0.0)
    torch.testing.assert_close(terms["full_loss"], terms["loss"].detach())


def test_a_training_step_under_bf16_autocast_keeps_the_codebook_fp32(real_pairs, word_dict):
    torch.manual_seed(0)
    src, src_len, tgt = batch(real_pairs, word_dict)
    model = tiny_model(word_dict).train()
    codebook = model.bottleneck.codebook
    counts = codebook.ema_count.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = latent_terms(model(src, src_len, tgt), label_smoothing=0.0)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and terms["loss"].dtype == torch.float32
    for name in ("embedding", "ema_count", "ema_sum"):
        assert getattr(codebook, name).dtype == torch.float32, name
    assert not torch.equal(codebook.ema_count, counts)  # the EMA step ran
