"""Noisy parallel decoding: score the latent transformer's candidate translations with an autoregressive model.

For each source x the NAT proposes n candidates y_1..y_n (the n best latent sequences of a beam over the prior,
each decoded in one parallel pass). The autoregressive teacher scores every candidate in **one teacher-forced
forward pass** (no step-by-step decoding), and the candidate with the highest length-normalised log-likelihood

    s(y) = (1 / |y|) sum_t log p_teacher(y_t | y_<t, x)          (|y| counts the final EOS)

is returned. Cost: one encoder pass and one parallel decoder pass of the teacher over n * |y| positions.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def teacher_scores(teacher, src_tokens: Tensor, src_lengths: Tensor, hypotheses: list[Tensor], pad: int,
                   eos: int) -> Tensor:
    """Mean log-probability per token of each hypothesis under a fairseq encoder-decoder model.

    ``src_tokens [N, S]`` and ``src_lengths [N]``: the source of each hypothesis (repeat a sentence's source for
    each of its candidates); ``hypotheses``: N token tensors ending in EOS. Returns ``[N]`` float scores.
    """
    if len(hypotheses) != src_tokens.shape[0]:
        raise ValueError(f"{len(hypotheses)} hypotheses for {src_tokens.shape[0]} sources")
    from fairseq.data import data_utils

    # fairseq's convention, as its translation task collates targets: the decoder input is the target shifted
    # right behind an EOS; both right-padded. Padding is masked out of the score.
    target = data_utils.collate_tokens(hypotheses, pad, eos)  # (N, T)
    previous = data_utils.collate_tokens(hypotheses, pad, eos, move_eos_to_beginning=True)  # (N, T)
    net_output = teacher(src_tokens, src_lengths, previous)
    log_probs = teacher.get_normalized_probs(net_output, log_probs=True).float()  # (N, T, V)
    picked = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (N, T)
    mask = target.ne(pad)
    return (picked * mask).sum(1) / mask.sum(1).clamp_min(1)
