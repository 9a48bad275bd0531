"""fairseq criterion ``vqnat_image_bits``: the image VQ-VAE's loss, and bits/dim the way the VQ-VAE paper reports it.

Per batch of B images with D = C * H * W subpixels each and S latent tokens of K codes (sums over the batch)::

    nll        = sum_images -log p(x | c(x))                  decoder's categorical NLL of the 8-bit pixels, nats
    loss       = nll + B * D * beta * commitment + prior_nll  (sample_size = B * D, so gradients are per subpixel)
    bpd        = (nll + B * S * log K) / (B * D * ln 2)       uniform prior over the codes
    prior_bpd  = (nll + prior_nll) / (B * D * ln 2)           learned prior, prior_nll = -log p_prior(c(x))
    recon_bpd  = nll / (B * D * ln 2)

The prior sees stop-gradient codes and owns its parameters, so its term trains the prior only (and, under Adam,
its scale does not matter). Also logged: commitment, codebook perplexity and dead-code fraction (batch means).
"""

import math
from dataclasses import dataclass

from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from vqnat.modules.image_vqvae import vqvae_loss

LN2 = math.log(2)


@dataclass
class ImageBitsConfig(FairseqDataclass):
    """No options: the loss weights live in the model (its bottleneck's beta)."""


@register_criterion("vqnat_image_bits", dataclass=ImageBitsConfig)
class ImageBitsCriterion(FairseqCriterion):
    def forward(self, model, sample, reduce: bool = True):
        """Returns ``(loss, sample_size, logging_output)``; ``loss`` is a sum over the batch in nats."""
        images = sample["net_input"]["images"]  # (B, C, H, W) uint8
        out = model(images)
        terms = vqvae_loss(model.net, out, images)
        batch, subpixels = images.shape[0], terms.subpixels
        logging_output = {
            "loss": terms.loss.detach().item(),
            "nll": terms.nll.detach().item(),
            "latent_uniform": batch * model.net.uniform_latent_nats,
            "prior_nll": terms.prior_nll.detach().item(),
            "prior_images": batch if out.prior_logits is not None else 0,
            "commitment": out.vq.commitment.detach().item(),
            "perplexity": out.vq.perplexity.item(),
            "dead_fraction": out.vq.dead_fraction.item(),
            "nbatches": 1,
            "ntokens": subpixels,
            "nsentences": batch,
            "sample_size": subpixels,
        }
        return terms.loss, subpixels, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key: str) -> float:
            return sum(log.get(key, 0) for log in logging_outputs)

        subpixels = total("sample_size")
        batches = max(total("nbatches"), 1)
        if subpixels == 0:
            return
        bits = subpixels * LN2
        metrics.log_scalar("loss", total("loss") / bits, subpixels, round=4)
        metrics.log_scalar("bpd", (total("nll") + total("latent_uniform")) / bits, subpixels, round=4)
        metrics.log_scalar("recon_bpd", total("nll") / bits, subpixels, round=4)
        if total("prior_images") == total("nsentences"):
            metrics.log_scalar("prior_bpd", (total("nll") + total("prior_nll")) / bits, subpixels, round=4)
        metrics.log_scalar("commitment", total("commitment") / batches, batches, round=4)
        metrics.log_scalar("perplexity", total("perplexity") / batches, batches, round=2)
        metrics.log_scalar("dead_fraction", total("dead_fraction") / batches, batches, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
