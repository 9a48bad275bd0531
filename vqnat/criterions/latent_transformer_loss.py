"""Loss of the latent transformer: reconstruction + prior + commitment, each logged on its own.

    loss = CE_ls(decoder tokens | encoder latents) + w_prior * CE(prior | sg(codes)) + beta * commitment
           [+ w_length * CE(length predictor | |y|)   with --length-predictor]

``full_loss`` is the same sum with the prior always at weight 1. ``loss`` leaves the prior out during its warm-up,
so on valid it jumps when the prior comes in, and a checkpoint from before the jump would stay "best" on it for
good; ``recon_loss`` ignores the prior, which is what decoding depends on. ``full_loss`` compares every checkpoint
on the one quantity (``--best-checkpoint-metric full_loss``).

Every term is a mean over its own positions (tokens inside T'_b, latents inside L_b), so ``sample_size`` is 1,
as in fairseq's NAT criterion. For soft EM the prior's target is the averaged one-hot of the m sampled codes:
``CE = -(1/m) sum_i log p(k_i)``.
"""


import math
from dataclasses import dataclass, field

from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from torch import Tensor
from torch.nn.functional import cross_entropy

from vqnat.models.latent_transformer import LatentTransformerOutput

CRITERION_NAME = "vqnat_latent_transformer_loss"
_LOGGED = ("loss", "full_loss", "recon_loss", "prior_loss", "commitment", "token_accuracy", "prior_accuracy",
           "perplexity", "dead_fraction", "length_loss", "length_accuracy")


@dataclass
class LatentTransformerLossConfig(FairseqDataclass):
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing of the reconstruction loss"})


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1)


def smoothed_cross_entropy(logits: Tensor, targets: Tensor, smoothing: float) -> Tensor:
    """Per-position label-smoothed CE: ``[..., V], [...] -> [...]``."""
    log_probs = logits.float().log_softmax(-1)
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if smoothing == 0:
        return nll
    return (1 - smoothing) * nll - smoothing * log_probs.mean(-1)


def latent_terms(out: LatentTransformerOutput, label_smoothing: float) -> dict[str, Tensor]:
    """Named loss terms and accuracies of one forward pass (scalars)."""
    token_ce = smoothed_cross_entropy(out.token_logits, out.token_targets, label_smoothing)  # (B, T')
    recon = masked_mean(token_ce, out.token_mask)
    token_acc = masked_mean(out.token_logits.argmax(-1).eq(out.token_targets).float(), out.token_mask)
    prior_log_probs = out.prior_logits.float().log_softmax(-1)  # (B, L, H, K)
    sampled = prior_log_probs.gather(-1, out.prior_targets)  # (B, L, H, m)
    prior_ce = -sampled.mean(-1).mean(-1)  # (B, L): averaged one-hot targets, averaged over slices
    prior = masked_mean(prior_ce, out.latent_mask)
    nearest = out.vq.codes  # (B, L, H)
    prior_acc = masked_mean(out.prior_logits.argmax(-1).eq(nearest).float().mean(-1), out.latent_mask)
    loss = recon + out.prior_weight * prior + out.vq.loss
    full = recon + prior + out.vq.loss
    terms = {"recon_loss": recon, "prior_loss": prior, "commitment": out.vq.commitment,
             "token_accuracy": token_acc, "prior_accuracy": prior_acc, "perplexity": out.vq.perplexity,
             "dead_fraction": out.vq.dead_fraction}
    if out.length_logits is not None:
        length_ce = cross_entropy(out.length_logits.float(), out.length_targets)
        loss = loss + out.length_weight * length_ce
        full = full + out.length_weight * length_ce
        terms["length_loss"] = length_ce
        terms["length_accuracy"] = out.length_logits.argmax(-1).eq(out.length_targets).float().mean()
    return {"loss": loss, "full_loss": full.detach(), **terms}


@register_criterion(CRITERION_NAME, dataclass=LatentTransformerLossConfig)
class LatentTransformerLoss(FairseqCriterion):
    def __init__(self, task, label_smoothing: float = 0.1) -> None:
        super().__init__(task)
        self.label_smoothing = label_smoothing

    def forward(self, model, sample, reduce: bool = True):
        net_input = sample["net_input"]
        out = model(net_input["src_tokens"], net_input["src_lengths"], sample["target"])
        terms = latent_terms(out, self.label_smoothing)
        logging_output = {name: float(value.detach()) for name, value in terms.items()}
        logging_output.update(ntokens=sample["ntokens"], nsentences=sample["target"].size(0), sample_size=1)
        return terms["loss"], 1, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        batches = sum(log.get("sample_size", 0) for log in logging_outputs) or 1
        for name in _LOGGED:
            if not any(name in log for log in logging_outputs):
                continue  # e.g. length terms without a length predictor
            total = sum(log.get(name, 0.0) for log in logging_outputs)
            scale = 1 / math.log(2) if name.endswith("loss") else 1.0  # losses in bits, as fairseq does
            metrics.log_scalar(name, total / batches * scale, batches, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


__all__ = ["CRITERION_NAME", "LatentTransformerLoss", "latent_terms"]
