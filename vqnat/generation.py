"""fairseq-style generator for the latent transformer: prior decodes the latents, one parallel decoder pass."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


def repeat_mask(tokens: Tensor) -> Tensor:
    """``[T]`` -> bool ``[T]``, False where a token repeats its left neighbour (``a a b b b c`` keeps ``a b c``)."""
    keep = torch.ones_like(tokens, dtype=torch.bool)
    keep[1:] = tokens[1:].ne(tokens[:-1])
    return keep


class LatentTransformerGenerator:
    """Turns :meth:`LatentTransformerModel.translate` into fairseq hypotheses (one per sentence).

    Each hypothesis is ``{"tokens": [T] ending in EOS, "score": mean log-prob, "positional_scores": [T],
    "alignment": None, "attention": None}``, the format ``fairseq-generate`` prints and scores.
    """

    def __init__(self, tgt_dict, collapse_repeated_tokens: bool = False) -> None:
        self.tgt_dict = tgt_dict
        self.eos = tgt_dict.eos()
        self.pad = tgt_dict.pad()
        self.collapse_repeated_tokens = collapse_repeated_tokens
        self.symbols_to_strip_from_output = {self.eos}

    @torch.no_grad()
    def generate(self, models, sample, **unused) -> list[list[dict[str, object]]]:
        if len(models) > 1:
            logger.warning("latent transformer: ensembles are not supported, using the first model only")
        model = models[0]
        net_input = sample["net_input"]
        out = model.translate(net_input["src_tokens"], net_input["src_lengths"])
        hypos = []
        for b in range(out.tokens.shape[0]):
            length = int(out.lengths[b])
            tokens, scores = out.tokens[b, :length], out.log_probs[b, :length]
            real = tokens.ne(self.pad)  # a decoder position may predict padding before EOS: it emits nothing
            tokens, scores = tokens[real], scores[real]
            length = len(tokens)
            if length == 0 or int(tokens[-1]) != self.eos:
                tokens = torch.cat([tokens, tokens.new_tensor([self.eos])])
                scores = torch.cat([scores, scores.new_zeros(1)])
            if self.collapse_repeated_tokens:
                keep = repeat_mask(tokens)
                tokens, scores = tokens[keep], scores[keep]
            hypos.append([{"tokens": tokens, "score": float(scores.mean()), "positional_scores": scores,
                           "alignment": None, "attention": None}])
        return hypos
