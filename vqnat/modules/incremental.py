"""Step-by-step decoding through a causal :class:`CrossAttentionStack` with key/value caches (inference only).

Teacher-forced, the latent prior re-reads its whole prefix at every step and re-projects the source encoding
into keys/values in every layer: step t costs O(t) positions plus O(S) projections. Here the source keys/values
are projected once per sentence and the prefix's self-attention keys/values are kept, so a step costs one
position. The arithmetic is that of PyTorch's pre-norm ``nn.TransformerDecoderLayer`` (ReLU or GELU feed-forward,
dropout off), so both paths give the same logits up to rounding; a test checks it.

Per layer, for the new position x_t ``[B, 1, D]``:

    x_t += SelfAttn(LN1(x_t), keys/values of positions <= t)
    x_t += CrossAttn(LN2(x_t), source keys/values, source padding masked)
    x_t += FFN(LN3(x_t))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vqnat.modules.transformer import CrossAttentionStack


class IncrementalState:
    """The caches of one decoding run: per layer, self-attention keys/values ``[B, heads, t, Dh]`` and the source
    keys/values ``[B, heads, S, Dh]``; plus the source mask ``[B, 1, 1, S]`` (True = attend)."""

    def __init__(self, self_keys: list[Tensor], self_values: list[Tensor], memory_keys: list[Tensor],
                 memory_values: list[Tensor], memory_mask: Tensor) -> None:
        self.self_keys, self.self_values = self_keys, self_values
        self.memory_keys, self.memory_values = memory_keys, memory_values
        self.memory_mask = memory_mask

    def reorder(self, order: Tensor) -> None:
        """Keep rows ``order [B']`` of every cache (beam search: which hypotheses survive)."""
        for caches in (self.self_keys, self.self_values, self.memory_keys, self.memory_values):
            for i, cache in enumerate(caches):
                caches[i] = cache.index_select(0, order)
        self.memory_mask = self.memory_mask.index_select(0, order)


class IncrementalDecoder:
    """Runs a causal :class:`CrossAttentionStack` one position at a time (no dropout: call on an eval model)."""

    def __init__(self, stack: CrossAttentionStack) -> None:
        if not stack.causal:
            raise ValueError("incremental decoding needs a causal stack")
        self.stack = stack
        self.layers: list[nn.TransformerDecoderLayer] = list(stack.layers)  # type: ignore[arg-type]
        first = self.layers[0]
        self.heads = first.self_attn.num_heads
        if not first.norm_first:
            raise ValueError("incremental decoding follows pre-norm layers (norm_first=True)")

    def start(self, memory: Tensor, memory_padding_mask: Tensor) -> IncrementalState:
        """Project the source ``memory [B, S, D]`` (``memory_padding_mask [B, S]``, True = pad) once per layer."""
        keys, values = [], []
        for layer in self.layers:
            attn = layer.multihead_attn
            d = attn.embed_dim
            w, b = attn.in_proj_weight, attn.in_proj_bias
            keys.append(self._split(F.linear(memory, w[d : 2 * d], b[d : 2 * d])))
            values.append(self._split(F.linear(memory, w[2 * d :], b[2 * d :])))
        mask = (~memory_padding_mask)[:, None, None, :]  # (B, 1, 1, S)
        empty = memory.new_zeros(memory.shape[0], self.heads, 0, memory.shape[-1] // self.heads)
        return IncrementalState([empty] * len(self.layers), [empty] * len(self.layers), keys, values, mask)

    def step(self, x: Tensor, state: IncrementalState) -> Tensor:
        """One new position ``x [B, 1, D]`` -> its output ``[B, 1, D]`` (after the stack's final norm)."""
        for i, layer in enumerate(self.layers):
            h = layer.norm1(x)
            attn = layer.self_attn
            q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            state.self_keys[i] = torch.cat([state.self_keys[i], self._split(k)], dim=2)
            state.self_values[i] = torch.cat([state.self_values[i], self._split(v)], dim=2)
            out = F.scaled_dot_product_attention(self._split(q), state.self_keys[i], state.self_values[i])
            x = x + attn.out_proj(self._merge(out))
            h = layer.norm2(x)
            cross = layer.multihead_attn
            d = cross.embed_dim
            q = F.linear(h, cross.in_proj_weight[:d], cross.in_proj_bias[:d])
            out = F.scaled_dot_product_attention(self._split(q), state.memory_keys[i], state.memory_values[i],
                                                 attn_mask=state.memory_mask)
            x = x + cross.out_proj(self._merge(out))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return self.stack.norm(x)

    def _split(self, x: Tensor) -> Tensor:
        """``[B, T, D] -> [B, heads, T, D / heads]``."""
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    @staticmethod
    def _merge(x: Tensor) -> Tensor:
        """``[B, heads, T, Dh] -> [B, T, heads * Dh]``."""
        b, h, t, dh = x.shape
        return x.transpose(1, 2).reshape(b, t, h * dh)
