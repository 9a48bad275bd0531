"""The autoregressive prior over discrete latent codes, shared by the translation and the image model.

A sequence of ``L`` positions, each holding one code per codebook slice (``codes [B, L, H]``, K codes per slice),
is modelled left to right, optionally conditioned on a memory (the source encoding of a translation)::

    p(c | x) = prod_l prod_h p(c_{l,h} | c_<l, x)

The slices of one position are predicted together from the positions before it (independent given the past). A
position's input is the sum of one embedding per slice of the previous position's codes (a BOS code K in front),
plus a sinusoidal position; a causal Transformer with cross-attention to the memory turns it into logits
``[B, L, H, K]``. Without a memory (``conditional=False``, the image model) the cross-attention reads one learned
vector, which makes it a per-layer learned bias: the prior is unconditional.

The prior trains on stop-gradient codes (nothing reaches the encoder or the codebook). Decoding runs one position
per step with key/value caches (:mod:`vqnat.modules.incremental`): greedy (:meth:`LatentPrior.greedy`), sampled
(:meth:`LatentPrior.sample`) or beam search (:meth:`LatentPrior.beam`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from vqnat.modules.incremental import IncrementalDecoder, IncrementalState
from vqnat.modules.positions import sinusoidal_table
from vqnat.modules.transformer import CrossAttentionStack


class LatentPrior(nn.Module):
    """Causal Transformer over codes ``[B, L, H]`` (K codes per slice, BOS = K): teacher-forced logits
    ``[B, L, H, K]`` and cached step-by-step decoding. ``max_length``: the longest L it is asked for."""

    def __init__(self, codebook_size: int, slices: int, dim: int, layers: int, heads: int, ffn_dim: int,
                 dropout: float, max_length: int, conditional: bool = True) -> None:
        super().__init__()
        self.codebook_size, self.slices = codebook_size, slices
        self.embed = nn.Embedding(slices * (codebook_size + 1), dim)  # slice h: rows h (K + 1) .. h (K + 1) + K
        self.dropout = nn.Dropout(dropout)
        self.stack = CrossAttentionStack(dim, layers, heads, ffn_dim, dropout, causal=True)
        self.out = nn.Linear(dim, slices * codebook_size)
        # an unconditional prior attends to this one learned vector instead of a source encoding
        self.null_memory = None if conditional else nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("position_table", sinusoidal_table(torch.arange(max_length + 1), dim), persistent=False)

    # ------------------------------------------------------------------ training
    def forward(self, codes: Tensor, memory: Tensor | None = None, memory_padding_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits: codes ``[B, L, H]`` -> ``[B, L, H, K]``; position l sees the codes before l only
        (inputs shifted right behind the BOS code). ``memory [B, S, D]`` with ``memory_padding_mask [B, S]``
        (True = pad) for a conditional prior."""
        b, length, h = codes.shape
        k = self.codebook_size
        self._check_length(length)
        bos = torch.full((b, 1, h), k, dtype=codes.dtype, device=codes.device)
        inputs = torch.cat([bos, codes[:, :-1]], dim=1)  # (B, L, H)
        x = self.dropout(self.embed_codes(inputs) + self.position_table[:length])  # (B, L, D)
        memory, memory_padding_mask = self._memory(memory, memory_padding_mask, b)
        y = self.stack(x, None, memory, memory_padding_mask)  # (B, L, D)
        return self.out(y).view(b, length, h, k)

    def nll(self, codes: Tensor, memory: Tensor | None = None, memory_padding_mask: Tensor | None = None) -> Tensor:
        """``-log p(codes)`` per sequence in nats: codes ``[B, L, H]`` -> ``[B]``."""
        logits = self(codes, memory, memory_padding_mask)  # (B, L, H, K)
        return nn.functional.cross_entropy(logits.float().flatten(1, 2).transpose(1, 2), codes.flatten(1),
                                           reduction="none").sum(-1)

    def embed_codes(self, codes: Tensor) -> Tensor:
        """A position's input: codes ``[..., H]`` (BOS = K) -> the sum of each slice's own embedding ``[..., D]``."""
        offsets = torch.arange(self.slices, device=codes.device) * (self.codebook_size + 1)
        return self.embed(codes + offsets).sum(-2)

    # ------------------------------------------------------------------ decoding
    def greedy(self, num_latents: int, memory: Tensor | None = None, memory_padding_mask: Tensor | None = None,
               batch: int | None = None) -> Tensor:
        """The prior's argmax, left to right: codes ``[B, L, H]`` for ``L = num_latents`` (``batch``: B of an
        unconditional prior)."""
        return self._decode(num_latents, memory, memory_padding_mask, batch, lambda logits: logits.argmax(-1))

    @torch.no_grad()
    def sample(self, num_latents: int, memory: Tensor | None = None, memory_padding_mask: Tensor | None = None,
               batch: int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Codes ``[B, L, H]`` drawn one position at a time from ``softmax(logits / temperature)`` (no dropout)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")

        def draw(logits: Tensor) -> Tensor:  # (B, H, K) -> (B, H)
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            return torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(probs.shape[:2])

        was_training = self.training
        self.eval()
        try:
            return self._decode(num_latents, memory, memory_padding_mask, batch, draw)
        finally:
            self.train(was_training)

    def beam(self, num_latents: Tensor, beam: int, memory: Tensor | None = None,
             memory_padding_mask: Tensor | None = None, batch: int | None = None) -> tuple[Tensor, Tensor]:
        """Beam search over code sequences of one slice: ``num_latents [B]`` codes each.

        Returns codes ``[B, beam, L, 1]`` (L = max num_latents; a sequence's codes past its own length are 0) and
        their log-probabilities ``[B, beam]``, best first. Score = sum_l log p(c_l | c_<l, x).
        """
        if self.slices != 1:
            raise ValueError("beam search over latents needs --codebook-slices 1 (a beam over H slices at once "
                             "is not implemented)")
        k = self.codebook_size
        if beam > k:
            raise ValueError(f"latent beam {beam} is larger than the codebook ({k} codes)")
        b = len(num_latents)
        memory, memory_padding_mask = self._memory(memory, memory_padding_mask, b)
        device = memory.device
        decoder = IncrementalDecoder(self.stack)
        state = decoder.start(memory.repeat_interleave(beam, dim=0), memory_padding_mask.repeat_interleave(beam, 0))
        scores = memory.new_full((b, beam), float("-inf"), dtype=torch.float32)
        scores[:, 0] = 0.0  # all beams start as the same empty hypothesis: expand only the first
        history = torch.zeros(b, beam, 0, dtype=torch.long, device=device)
        previous = torch.full((b * beam, 1), k, dtype=torch.long, device=device)  # BOS
        rows = torch.arange(b, device=device).unsqueeze(1) * beam  # (B, 1)
        finished_step = memory.new_full((k,), float("-inf"), dtype=torch.float32)
        finished_step[0] = 0.0  # a sequence with all its latents only extends by code 0, at no cost
        steps = int(num_latents.max()) if b else 0
        self._check_length(steps)
        for t in range(steps):
            log_probs = self._step(decoder, state, previous, t).float().log_softmax(-1).view(b, beam, k)
            done = (num_latents <= t).view(b, 1, 1)
            log_probs = torch.where(done, finished_step, log_probs)
            top, index = (scores.unsqueeze(-1) + log_probs).view(b, beam * k).topk(beam, dim=-1)  # (B, beam)
            origin, code = index // k, index % k
            scores = top
            history = torch.cat([history.gather(1, origin.unsqueeze(-1).expand(-1, -1, t)), code.unsqueeze(-1)], -1)
            state.reorder((origin + rows).view(-1))
            previous = code.view(-1, 1)
        return history.unsqueeze(-1), scores

    def _decode(self, num_latents: int, memory: Tensor | None, memory_padding_mask: Tensor | None,
                batch: int | None, choose: Callable[[Tensor], Tensor]) -> Tensor:
        """Left-to-right decoding where ``choose`` turns a position's logits ``[B, H, K]`` into codes ``[B, H]``."""
        self._check_length(num_latents)
        memory, memory_padding_mask = self._memory(memory, memory_padding_mask, batch)
        b, h, k = memory.shape[0], self.slices, self.codebook_size
        decoder = IncrementalDecoder(self.stack)
        state = decoder.start(memory, memory_padding_mask)
        previous = torch.full((b, h), k, dtype=torch.long, device=memory.device)  # BOS
        codes = []
        for t in range(num_latents):
            previous = choose(self._step(decoder, state, previous, t).view(b, h, k))  # (B, H)
            codes.append(previous)
        return torch.stack(codes, 1) if codes else previous.new_zeros(b, 0, h)

    def _step(self, decoder: IncrementalDecoder, state: IncrementalState, previous: Tensor, position: int) -> Tensor:
        """Codes of the previous position ``[B, H]`` (BOS = K) -> logits of ``position``: ``[B, H * K]``."""
        x = (self.embed_codes(previous) + self.position_table[position]).unsqueeze(1)  # (B, 1, D)
        return self.out(decoder.step(x, state)[:, 0])

    def _memory(self, memory: Tensor | None, memory_padding_mask: Tensor | None,
                batch: int | None) -> tuple[Tensor, Tensor]:
        """The memory the cross-attention reads: the given one, or the learned null vector ``[B, 1, D]``."""
        if self.null_memory is None:
            if memory is None or memory_padding_mask is None:
                raise ValueError("a conditional prior needs a memory and its padding mask")
            return memory, memory_padding_mask
        if memory is not None:
            raise ValueError("an unconditional prior takes no memory")
        if batch is None:
            raise ValueError("an unconditional prior needs the batch size")
        null = self.null_memory.expand(batch, -1, -1)
        return null, torch.zeros(batch, 1, dtype=torch.bool, device=null.device)

    def _check_length(self, length: int) -> None:
        if length >= len(self.position_table):
            raise ValueError(f"{length} latent positions, more than the prior's {len(self.position_table) - 1}")
