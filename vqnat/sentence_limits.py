"""Autoregressive search whose length limit is each sentence's own, so an answer does not depend on its batch.

fairseq's ``SequenceGenerator`` stops every sentence of a batch at ``max_len_a * src_len + max_len_b`` tokens,
with ``src_len`` the *padded* source length: the batch's longest source. A sentence batched with a longer one may
therefore run past the length it would be cut at alone, and come back different. :class:`SentenceLimitedGenerator`
forces end-of-sentence for each hypothesis at ``min(int(max_len_a * own_len + max_len_b), max_len - 1)``, the
limit the same search applies to that sentence alone, so the search takes exactly the steps it takes alone.

A caller may also stop a search between two decoder steps: set ``generator.should_stop`` to a function that
returns True once the result is no longer wanted, and ``generate`` raises :class:`GenerationStopped`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from fairseq.sequence_generator import EnsembleModel, SequenceGenerator
from torch import Tensor


class GenerationStopped(RuntimeError):
    """``should_stop`` asked the search to stop: it has no result."""


class _SentenceLimitedEnsemble(EnsembleModel):
    """fairseq's ensemble wrapper; its next-token log-probabilities allow only EOS past a row's own limit."""

    max_len_a: float = 0.0
    max_len_b: int = 200
    max_len_cap: int = 1 << 30
    eos: int = 2
    should_stop: Callable[[], bool] | None = None

    def forward_decoder(self, tokens: Tensor, encoder_outs, incremental_states, temperature: float = 1.0):
        if self.should_stop is not None and self.should_stop():
            raise GenerationStopped("the search was stopped by its caller")
        lprobs, attn = super().forward_decoder(tokens, encoder_outs, incremental_states, temperature)
        step = tokens.size(1) - 1  # tokens holds the BOS/EOS start symbol and `step` generated tokens
        over = step >= self.row_limits(encoder_outs[0])
        if bool(over.any()):
            lprobs[over, : self.eos] = -math.inf
            lprobs[over, self.eos + 1 :] = -math.inf
        return lprobs, attn

    def row_limits(self, encoder_out: dict[str, list[Tensor]]) -> Tensor:
        """Per hypothesis row: the step at which it must end, from its own source length (EOS included)."""
        lengths = _source_lengths(encoder_out).to(torch.float64)
        limits = torch.floor(lengths * self.max_len_a + self.max_len_b).to(torch.long)
        return limits.clamp(max=self.max_len_cap)


def _source_lengths(encoder_out: dict[str, list[Tensor]]) -> Tensor:
    """Non-pad source tokens of each row, from what fairseq's transformer encoder returns."""
    lengths = encoder_out.get("src_lengths") or []
    if lengths:
        return lengths[0].reshape(-1)
    masks = encoder_out.get("encoder_padding_mask") or []
    states = encoder_out["encoder_out"][0]  # T x B x C
    if masks:
        return (~masks[0]).sum(dim=1)
    return torch.full((states.size(1),), states.size(0), dtype=torch.long, device=states.device)


class SentenceLimitedGenerator(SequenceGenerator):
    """``SequenceGenerator`` with per-sentence length limits and a stop check (see the module docstring); same
    arguments."""

    def __init__(self, models, tgt_dict, **kwargs) -> None:
        ensemble = _SentenceLimitedEnsemble(models)
        super().__init__(ensemble, tgt_dict, **kwargs)  # keeps it as self.model
        ensemble.max_len_a, ensemble.max_len_b = self.max_len_a, self.max_len_b
        ensemble.max_len_cap, ensemble.eos = self.max_len - 1, self.eos

    @property
    def should_stop(self) -> Callable[[], bool] | None:
        """Checked before every decoder step; True stops the search with :class:`GenerationStopped`."""
        return self.model.should_stop

    @should_stop.setter
    def should_stop(self, check: Callable[[], bool] | None) -> None:
        self.model.should_stop = check
