"""fairseq-style generator for the latent transformer: prior decodes the latents, one parallel decoder pass."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from vqnat.rescoring import teacher_scores

logger = logging.getLogger(__name__)


def sentence_output(tokens: Tensor, scores: Tensor, length: int, pad: int, eos: int) -> tuple[Tensor, Tensor]:
    """One sentence of a latent transformer's ``Translation``: its first ``length`` tokens ``[T']`` and
    log-probabilities, without the padding a decoder position may predict before EOS (it emits nothing), ending in
    EOS (appended with log-probability 0 when the sentence filled its T'_b without one): tokens ``[T]``, scores
    ``[T]``."""
    tokens, scores = tokens[:length], scores[:length]
    real = tokens.ne(pad)
    tokens, scores = tokens[real], scores[real]
    if len(tokens) == 0 or int(tokens[-1]) != eos:
        tokens = torch.cat([tokens, tokens.new_tensor([eos])])
        scores = torch.cat([scores, scores.new_zeros(1)])
    return tokens, scores


def repeat_mask(tokens: Tensor) -> Tensor:
    """``[T]`` -> bool ``[T]``, False where a token repeats its left neighbour (``a a b b b c`` keeps ``a b c``)."""
    keep = torch.ones_like(tokens, dtype=torch.bool)
    keep[1:] = tokens[1:].ne(tokens[:-1])
    return keep


class LatentTransformerGenerator:
    """Turns :meth:`LatentTransformerModel.translate` into fairseq hypotheses.

    Each hypothesis is ``{"tokens": [T] ending in EOS, "score": mean log-prob, "positional_scores": [T],
    "alignment": None, "attention": None}``, the format ``fairseq-generate`` prints and scores.

    ``latent_beam = n > 1``: beam search over the latents; the n candidates are all returned, best first: by the
    prior's score, or, with a ``rescorer`` (an autoregressive fairseq model with the same dictionaries), by the
    rescorer's mean log-likelihood (noisy parallel decoding, :mod:`vqnat.rescoring`).

    ``length_ratio`` / ``length_offset``: the target-length rule for these calls (None: the model's own);
    ``refine_steps``: refinement passes after greedy decoding (:meth:`LatentTransformerModel.refine`).
    """

    def __init__(self, tgt_dict, collapse_repeated_tokens: bool = False, latent_beam: int = 1,
                 rescorer=None, length_ratio: float | None = None, length_offset: int | None = None,
                 refine_steps: int = 0) -> None:
        if latent_beam < 1:
            raise ValueError(f"latent_beam must be >= 1, got {latent_beam}")
        self.tgt_dict = tgt_dict
        self.eos = tgt_dict.eos()
        self.pad = tgt_dict.pad()
        self.collapse_repeated_tokens = collapse_repeated_tokens
        self.latent_beam = latent_beam
        self.rescorer = rescorer
        self.lengths = {"length_ratio": length_ratio, "length_offset": length_offset}
        self.refine_steps = refine_steps
        self.symbols_to_strip_from_output = {self.eos}

    @torch.no_grad()
    def generate(self, models, sample, **unused) -> list[list[dict[str, object]]]:
        if len(models) > 1:
            logger.warning("latent transformer: ensembles are not supported, using the first model only")
        model = models[0]
        net_input = sample["net_input"]
        src_tokens, src_lengths = net_input["src_tokens"], net_input["src_lengths"]
        if self.latent_beam == 1:
            out = model.translate(src_tokens, src_lengths, refine_steps=self.refine_steps, **self.lengths)
            return [[self._hypothesis(out.tokens[b], out.log_probs[b], int(out.lengths[b]))]
                    for b in range(out.tokens.shape[0])]
        tokens, log_probs, lengths, _, prior_scores = model.translate_candidates(src_tokens, src_lengths,
                                                                                self.latent_beam, **self.lengths)
        b, n = prior_scores.shape
        hypos = [[self._hypothesis(tokens[i, j], log_probs[i, j], int(lengths[i, j])) for j in range(n)]
                 for i in range(b)]
        for i in range(b):
            for j, hypo in enumerate(hypos[i]):
                hypo["prior_score"] = float(prior_scores[i, j])
        if self.rescorer is not None:
            flat = [hypo["tokens"] for row in hypos for hypo in row]
            scores = teacher_scores(self.rescorer, src_tokens.repeat_interleave(n, dim=0),
                                    src_lengths.repeat_interleave(n), flat, self.pad, self.eos).view(b, n)
            for i in range(b):
                for j, hypo in enumerate(hypos[i]):
                    hypo["score"] = float(scores[i, j])
                hypos[i].sort(key=lambda h: -h["score"])
        return hypos

    def _hypothesis(self, tokens: Tensor, scores: Tensor, length: int) -> dict[str, object]:
        tokens, scores = sentence_output(tokens, scores, length, self.pad, self.eos)
        if self.collapse_repeated_tokens:
            keep = repeat_mask(tokens)
            tokens, scores = tokens[keep], scores[keep]
        return {"tokens": tokens, "score": float(scores.mean()), "positional_scores": scores, "alignment": None,
                "attention": None}
