"""The Latent Transformer (Kaiser et al. 2018) with an EM-trained VQ bottleneck (Roy et al. 2018).

Training (teacher-forced on the target y, conditioned on the source x)::

    h_x = Encoder(x)                                              [B, S, D]
    a   = AutoencoderLayers(Embed(y~), h_x)                       [B, T', D]   y~: y padded to T' = 2^nc * L
    z   = Compress(a)                                             [B, L, D]    L = T' / 2^nc
    q   = VQ(z)  (hard or soft EM, straight-through)              [B, L, D]
    p(y~ | q, x) = softmax(Out(Decoder(Decompress(q) + pos, h_x))) [B, T', V]   one parallel pass, no causal mask
    p(c_l | c_<l, x) = Prior(c_<l, h_x)                           [B, L, H, K]  causal; targets: sg(codes)

Inference: c = greedy Prior decode for L = T' / 2^nc steps, then one Decoder pass on the code embeddings; the
output is cut at the first EOS (the decoder learned to emit EOS then padding). The padded length T' comes from one
of two rules (``--length-predictor``):

- ratio rule (the reference's, default): T' = 2^nc ceil(max(|y|, ratio |x| + offset) / 2^nc) in training and
  2^nc ceil((ratio |x| + offset) / 2^nc) at inference; the decoder predicts where the sentence ends.
- length predictor: a linear classifier over lengths 0..255 on the mean-pooled source encoding, trained with
  cross-entropy on |y| (EOS included; weight ``--length-loss-weight``); T' = 2^nc ceil((l + offset) / 2^nc) with
  l = |y| in training and l = min(argmax, ratio |x|) at inference, so ``--length-offset`` is a safety margin of
  extra positions and the ratio (2 by default) caps what an untrained or confused predictor can ask for.
  It decodes fewer positions than a generous ratio (cheaper), at the risk of cutting a sentence it underestimates.
"""


import math
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from torch import Tensor, nn

from vqnat.generation import sentence_output
from vqnat.models.quantizer_options import QuantizerOptions
from vqnat.modules.compression import Compressor, Decompressor
from vqnat.modules.latent_prior import LatentPrior
from vqnat.modules.positions import positions_from_mask, sinusoidal_table
from vqnat.modules.transformer import CrossAttentionStack, EncoderStack
from vqnat.quantization import QuantizerOutput, VectorQuantizer

MODEL_NAME = "vqnat_latent_transformer"
# state-dict key prefixes of the latent prior: before it was a module -> now
PRIOR_KEY_RENAMES = (("prior_embed.", "prior.embed."), ("prior_out.", "prior.out."),
                     ("prior.layers.", "prior.stack.layers."), ("prior.norm.", "prior.stack.norm."))
LENGTH_CLASSES = 256  # the length predictor's classes: 0..255 tokens (longer targets count as 255)


@dataclass
class LatentTransformerConfig(QuantizerOptions):
    """Options of the latent transformer; the bottleneck's (``--bottleneck``, ``--codebook-size``, ...) are
    :class:`~vqnat.quantization.QuantizerConfig`'s. Presets (``--arch``) only change the sizes."""

    embed_dim: int = field(default=512, metadata={"help": "model dimension D (also the codebook dimension)"})
    ffn_dim: int = field(default=4096, metadata={"help": "feed-forward inner dimension"})
    attention_heads: int = field(default=8, metadata={"help": "attention heads in every layer"})
    encoder_layers: int = field(default=6, metadata={"help": "source encoder layers"})
    decoder_layers: int = field(default=6, metadata={"help": "parallel decoder layers"})
    autoencoder_layers: int = field(default=2, metadata={"help": "target-side layers (attending to the source) "
                                                                 "before compression"})
    prior_layers: int = field(default=2, metadata={"help": "layers of the autoregressive latent prior"})
    dropout: float = field(default=0.1, metadata={"help": "dropout everywhere (the prior too, unless "
                                                            "--prior-dropout is given)"})
    # Optional[float], not float | None: fairseq's argparse generation only understands typing.Optional.
    prior_dropout: Optional[float] = field(default=None, metadata={  # noqa: UP045
        "help": "dropout of the latent prior alone (its input and layers); default: --dropout"})
    compress_steps: int = field(default=3, metadata={"help": "nc: the target is compressed 2^nc times"})
    prior_warmup_updates: int = field(default=0, metadata={"help": "the prior loss is off for this many updates "
                                                                   "(lets the codebook settle first)"})
    decoder_gold_mix_updates: int = field(default=0, metadata={
        "help": "decoder warm-up: with probability decaying linearly from 1 to 0 over this many updates, a decoder "
                "input position gets the gold target embedding instead of the decompressed latent (0 = off)"})
    length_ratio: float = field(default=2.0, metadata={"help": "target length = ratio * source length + offset, "
                                                              "rounded up to a multiple of 2^nc"})
    length_offset: int = field(default=0, metadata={"help": "extra target positions: added to ratio * |x| (ratio "
                                                              "rule) or to the predicted length (--length-predictor)"})
    length_predictor: bool = field(default=False, metadata={
        "help": "predict the target length from the source encoding instead of the ratio rule"})
    length_loss_weight: float = field(default=0.1, metadata={"help": "weight of the length predictor's loss"})
    share_all_embeddings: bool = field(default=True, metadata={"help": "one embedding matrix for source, target "
                                                                      "and output (needs a joined dictionary)"})
    max_source_positions: int = field(default=1024, metadata={"help": "longest source the model accepts"})
    max_target_positions: int = field(default=2048, metadata={"help": "longest (padded) target"})


class LatentTransformerOutput(NamedTuple):
    """What a training forward pass returns; the criterion turns it into named losses.

    token_logits:  ``[B, T', V]`` parallel decoder logits given the encoder's (quantized) latents.
    token_targets: ``[B, T']`` target padded with EOS-then-pad to T'.
    token_mask:    ``[B, T']`` bool, True at positions that count (inside each sentence's T'_b).
    prior_logits:  ``[B, L, H, K]`` latent prior logits (teacher forced on the codes).
    prior_targets: ``[B, L, H, m]`` codes the bottleneck chose (m soft-EM samples, or m = 1 for hard EM).
    latent_mask:   ``[B, L]`` bool, True at each sentence's own latents.
    prior_weight:  float, 0 during the prior warm-up, then 1.
    vq:            the bottleneck's output (commitment loss, perplexity, dead fraction).
    length_logits: ``[B, 256]`` length predictor logits, or None without ``--length-predictor``.
    length_targets: ``[B]`` target lengths |y| (EOS included), clamped to 255.
    length_weight: weight of the length loss (0 without a length predictor).
    """

    token_logits: Tensor
    token_targets: Tensor
    token_mask: Tensor
    prior_logits: Tensor
    prior_targets: Tensor
    latent_mask: Tensor
    prior_weight: float
    vq: QuantizerOutput
    length_logits: Tensor | None = None
    length_targets: Tensor | None = None
    length_weight: float = 0.0


class AutoencodedTarget(NamedTuple):
    """A target through the autoencoder (:meth:`LatentTransformerModel.autoencode`)."""

    targets: Tensor  # (B, T') EOS-terminated, padded to T'_b = |y| (+ offset) rounded up to a multiple of 2^nc
    token_mask: Tensor  # (B, T') True at each sentence's own T'_b positions
    lengths: Tensor  # (B,) T'_b
    target_embeddings: Tensor  # (B, T', D) scaled token embeddings (the decoder's gold inputs in warm-up)
    latent_mask: Tensor  # (B, L) True at each sentence's own T'_b / 2^nc latents
    vq: QuantizerOutput  # quantized latents [B, L, D], codes [B, L, H], ...


class Translation(NamedTuple):
    """Greedy NAT output for a batch: tokens ``[B, T']`` (pad after EOS) and per-token log-probabilities."""

    tokens: Tensor
    log_probs: Tensor
    lengths: Tensor  # [B] tokens up to and including EOS
    codes: Tensor  # [B, L, H] latent codes from the prior


@register_model(MODEL_NAME, dataclass=LatentTransformerConfig)
class LatentTransformerModel(BaseFairseqModel):
    """Non-autoregressive translation through discrete latents; see the module docstring for the maths."""

    def __init__(self, cfg: LatentTransformerConfig, src_dict, tgt_dict) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_dict, self.tgt_dict = src_dict, tgt_dict
        self.pad, self.eos = tgt_dict.pad(), tgt_dict.eos()
        d = cfg.embed_dim
        if d % 2 or d % cfg.attention_heads:
            raise ValueError(f"embed_dim={d} must be even and divisible by attention_heads={cfg.attention_heads}")
        self.embed_scale = math.sqrt(d)
        self.factor = 2**cfg.compress_steps
        self.src_embed = nn.Embedding(len(src_dict), d, padding_idx=src_dict.pad())
        if cfg.share_all_embeddings:
            if src_dict != tgt_dict:
                raise ValueError("--share-all-embeddings needs a joined dictionary (fairseq-preprocess "
                                 "--joined-dictionary); or pass --no-share-all-embeddings")
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(len(tgt_dict), d, padding_idx=self.pad)
        for emb in {id(self.src_embed): self.src_embed, id(self.tgt_embed): self.tgt_embed}.values():
            nn.init.normal_(emb.weight, std=d**-0.5)
            nn.init.zeros_(emb.weight[emb.padding_idx])
        self.dropout = nn.Dropout(cfg.dropout)
        heads, ffn, p = cfg.attention_heads, cfg.ffn_dim, cfg.dropout
        self.encoder = EncoderStack(d, cfg.encoder_layers, heads, ffn, p)
        self.autoencoder = CrossAttentionStack(d, cfg.autoencoder_layers, heads, ffn, p, causal=False)
        self.compress = Compressor(d, cfg.compress_steps, p)
        self.bottleneck = VectorQuantizer.from_config(d, cfg)
        self.decompress = Decompressor(d, cfg.compress_steps, p)
        self.decoder = CrossAttentionStack(d, cfg.decoder_layers, heads, ffn, p, causal=False)
        self.output_projection = nn.Linear(d, len(tgt_dict), bias=False)
        self.output_projection.weight = self.tgt_embed.weight
        self.length_out = nn.Linear(d, LENGTH_CLASSES) if cfg.length_predictor else None
        # Sinusoids computed once (not saved): positions index this table instead of recomputing sin/cos per call.
        longest_target = math.ceil(cfg.max_source_positions * cfg.length_ratio + cfg.length_offset) + self.factor
        table_size = max(cfg.max_source_positions, cfg.max_target_positions, longest_target) + 1
        self.register_buffer("position_table", sinusoidal_table(torch.arange(table_size), d), persistent=False)
        prior_p = cfg.dropout if cfg.prior_dropout is None else cfg.prior_dropout
        self.prior = LatentPrior(cfg.codebook_size, cfg.codebook_slices, d, cfg.prior_layers, heads, ffn, prior_p,
                                 max_length=table_size // self.factor + 1)
        self.num_updates = 0

    # ------------------------------------------------------------------ fairseq plumbing
    @classmethod
    def build_model(cls, cfg, task) -> "LatentTransformerModel":
        if not isinstance(cfg, LatentTransformerConfig):
            cfg = LatentTransformerConfig(**{k: getattr(cfg, k) for k in LatentTransformerConfig.__dataclass_fields__
                                             if k != "_name" and hasattr(cfg, k)})
        return cls(cfg, task.source_dictionary, task.target_dictionary)

    def max_positions(self) -> tuple[int, int]:
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates
        super().set_num_updates(num_updates)

    def upgrade_state_dict_named(self, state_dict: dict[str, Tensor], name: str) -> None:
        """Weights saved before the prior became a module (``prior_embed.*``, ``prior.layers.*``, ``prior.norm.*``,
        ``prior_out.*``) get the keys of :class:`LatentPrior` (``prior.embed.*``, ``prior.stack.*``, ``prior.out.*``).
        Called by fairseq's checkpoint loading and by the bundle loader."""
        prefix = f"{name}." if name else ""
        for key in list(state_dict):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            for old, new in PRIOR_KEY_RENAMES:
                if rest.startswith(old):
                    state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                    break
        super().upgrade_state_dict_named(state_dict, name)

    # ------------------------------------------------------------------ pieces
    def encode(self, src_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, S]`` (left- or right-padded) -> encoding ``[B, S, D]`` and padding mask ``[B, S]``."""
        if src_tokens.shape[1] > self.cfg.max_source_positions:
            raise ValueError(f"source has {src_tokens.shape[1]} tokens, more than max_source_positions="
                             f"{self.cfg.max_source_positions}: split or truncate the input")
        pad_mask = src_tokens.eq(self.src_dict.pad())  # (B, S)
        x = self.src_embed(src_tokens) * self.embed_scale + self._positions(~pad_mask)
        return self.encoder(self.dropout(x), pad_mask), pad_mask

    def target_lengths(self, src_lengths: Tensor, tgt_lengths: Tensor | None = None,
                       length_logits: Tensor | None = None, length_ratio: float | None = None,
                       length_offset: int | None = None) -> Tensor:
        """T'_b ``[B]``, a multiple of 2^nc (see the module docstring for both rules).

        Ratio rule: ``ratio * |x| + offset``, at least ``|y|`` in training (``tgt_lengths`` given).
        Length predictor: ``|y| + offset`` in training, ``min(argmax(length_logits), ratio * |x|) + offset`` at
        inference. ``length_ratio`` / ``length_offset`` override the trained ones for this call (None: as trained).
        """
        ratio = self.cfg.length_ratio if length_ratio is None else length_ratio
        offset = self.cfg.length_offset if length_offset is None else length_offset
        if self.length_out is None:
            length = torch.ceil(src_lengths.float() * ratio + offset).long()
            if tgt_lengths is not None:
                length = torch.maximum(length, tgt_lengths)
        elif tgt_lengths is not None:
            length = tgt_lengths + offset
        elif length_logits is not None:
            # Capped by the ratio rule's length: a predictor that has not learned yet (or a garbled source) must
            # not ask for hundreds of positions.
            cap = torch.ceil(src_lengths.float() * ratio).long()
            length = torch.minimum(length_logits.argmax(-1), cap) + offset
        else:
            raise ValueError("a model with a length predictor needs length_logits (or the target lengths)")
        length = length.clamp(1, self.cfg.max_target_positions)  # an override must not run past the positions
        return (length + self.factor - 1) // self.factor * self.factor

    def predict_length_logits(self, enc: Tensor, enc_pad: Tensor) -> Tensor | None:
        """Length predictor: mean of the source encoding over real tokens ``[B, D]`` -> logits ``[B, 256]``
        (None without ``--length-predictor``)."""
        if self.length_out is None:
            return None
        keep = (~enc_pad).unsqueeze(-1).to(enc.dtype)  # (B, S, 1)
        pooled = (enc * keep).sum(1) / keep.sum(1).clamp_min(1)  # (B, D)
        return self.length_out(pooled)

    def decode(self, latents: Tensor, lengths: Tensor, enc: Tensor, enc_pad: Tensor,
               gold: Tensor | None = None, project: bool = True) -> Tensor:
        """Parallel decoder: latents ``[B, L, D]`` -> token logits ``[B, L * 2^nc, V]`` in one pass (or, with
        ``project=False``, the hidden states ``[B, L * 2^nc, D]`` before the output projection).

        ``lengths [B]`` (multiples of 2^nc) mask each sentence's own positions; ``gold [B, T', D]`` (training
        warm-up only) replaces a random subset of decoder inputs by the gold target embeddings.
        """
        x = self.decompress(latents, lengths // self.factor)  # (B, T', D)
        if gold is not None:
            x = torch.where(self._gold_mix_mask(x), gold, x)
        pad_mask = _length_mask(lengths, x.shape[1]).logical_not()  # (B, T')
        x = self.dropout(x + self._positions(~pad_mask))
        h = self.decoder(x, pad_mask, enc, enc_pad)
        return self.output_projection(h) if project else h  # (B, T', V) or (B, T', D)

    def prior_logits(self, codes: Tensor, enc: Tensor, enc_pad: Tensor) -> Tensor:
        """Teacher-forced prior: codes ``[B, L, H]`` -> logits ``[B, L, H, K]`` for each position from the codes
        strictly before it, given the source encoding (:class:`~vqnat.modules.latent_prior.LatentPrior`)."""
        return self.prior(codes, enc, enc_pad)

    # ------------------------------------------------------------------ training
    def forward(self, src_tokens: Tensor, src_lengths: Tensor, target: Tensor, **unused) -> LatentTransformerOutput:
        """Teacher-forced pass: ``src_tokens [B, S]``, ``src_lengths [B]``, ``target [B, T]`` (right-padded,
        EOS-terminated, as in fairseq samples) -> :class:`LatentTransformerOutput`."""
        enc, enc_pad = self.encode(src_tokens)
        length_logits = self.predict_length_logits(enc, enc_pad)  # (B, 256) or None
        latents = self.autoencode(src_lengths, target, enc, enc_pad)
        vq, lengths = latents.vq, latents.lengths
        gold = latents.target_embeddings if self.training and self._gold_mix_probability() > 0 else None
        token_logits = self.decode(vq.quantized, lengths, enc, enc_pad, gold=gold)
        prior_logits = self.prior_logits(vq.codes.detach(), enc, enc_pad)  # stop-gradient codes
        tgt_lengths = target.ne(self.pad).sum(1)  # (B,)
        return LatentTransformerOutput(
            token_logits=token_logits, token_targets=latents.targets, token_mask=latents.token_mask,
            prior_logits=prior_logits, prior_targets=vq.samples.detach(), latent_mask=latents.latent_mask,
            prior_weight=float(self.num_updates >= self.cfg.prior_warmup_updates), vq=vq,
            length_logits=length_logits, length_targets=tgt_lengths.clamp_max(LENGTH_CLASSES - 1),
            length_weight=self.cfg.length_loss_weight if length_logits is not None else 0.0)

    def autoencode(self, src_lengths: Tensor, target: Tensor, enc: Tensor, enc_pad: Tensor) -> AutoencodedTarget:
        """The autoencoder half of the training pass: target ``[B, T]`` (right-padded, EOS-terminated) and the
        source encoding -> the target padded to ``T'_b`` and its quantized latents (:class:`AutoencodedTarget`)."""
        lengths = self.target_lengths(src_lengths, target.ne(self.pad).sum(1))  # (B,) T'_b
        t_max = int(lengths.max())
        targets = target.new_full((target.shape[0], t_max), self.pad)
        targets[:, : target.shape[1]] = target[:, :t_max]  # (B, T') EOS then pad
        token_mask = _length_mask(lengths, t_max)  # (B, T')
        y = self.tgt_embed(targets) * self.embed_scale  # (B, T', D)
        a = self.autoencoder(self.dropout(y + self._positions(token_mask)), ~token_mask, enc, enc_pad)
        z = self.compress(a, lengths)  # (B, L, D)
        latent_mask = _length_mask(lengths // self.factor, z.shape[1])  # (B, L)
        return AutoencodedTarget(targets, token_mask, lengths, y, latent_mask, self._quantize(z, latent_mask))

    def _quantize(self, z: Tensor, latent_mask: Tensor) -> QuantizerOutput:
        """Quantize only each sentence's own latents (batch padding must not move the codebook):
        ``z [B, L, D]`` -> outputs laid out as ``[B, L, ...]``, zeros / code 0 at padding."""
        out = self.bottleneck(z[latent_mask])  # (N, D) for the N real latents
        quantized = z.new_zeros(z.shape)
        quantized[latent_mask] = out.quantized
        codes = out.codes.new_zeros(*latent_mask.shape, out.codes.shape[-1])
        codes[latent_mask] = out.codes
        samples = out.samples.new_zeros(*latent_mask.shape, *out.samples.shape[-2:])
        samples[latent_mask] = out.samples
        return out._replace(quantized=quantized, codes=codes, samples=samples)

    def _gold_mix_probability(self) -> float:
        warmup = self.cfg.decoder_gold_mix_updates
        return max(0.0, 1.0 - self.num_updates / warmup) if warmup > 0 else 0.0

    def _gold_mix_mask(self, x: Tensor) -> Tensor:
        p = self._gold_mix_probability()
        return torch.rand(x.shape[:2], device=x.device).lt(p).unsqueeze(-1)  # (B, T', 1)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()  # not inference_mode: fairseq-generate edits the returned tensors in place
    def translate(self, src_tokens: Tensor, src_lengths: Tensor, latent_beam: int = 1, codes: Tensor | None = None,
                  lengths: Tensor | None = None, length_ratio: float | None = None,
                  length_offset: int | None = None, refine_steps: int = 0) -> Translation:
        """Prior decoding of the latents (greedy, or beam search over latents), then one parallel decoder pass.

        ``src_tokens [B, S]``, ``src_lengths [B]`` -> :class:`Translation` with tokens ``[B, T']``. With
        ``latent_beam > 1`` the latent sequence is the one the prior scores highest among the beam's survivors.
        ``length_ratio`` / ``length_offset`` override the trained length rule for this call.

        Decoding from given codes (ablations, a perfect prior): ``codes [B, L, H]`` replace the prior's, read at
        ``lengths [B]`` (T'_b, multiples of 2^nc; default: the length rule's, which must fit in L latents).

        ``refine_steps``: after decoding, this many times (:meth:`refine`) the output goes through the autoencoder
        and the decoder again (needs the autoencoder: not an inference-only export).
        """
        enc, enc_pad = self.encode(src_tokens)
        out = self._translate_once(enc, enc_pad, src_lengths, latent_beam, codes, lengths, length_ratio, length_offset)
        for _ in range(refine_steps):
            out = self.refine(out, src_lengths, enc, enc_pad)
        return out

    def refine(self, out: Translation, src_lengths: Tensor, enc: Tensor, enc_pad: Tensor) -> Translation:
        """One refinement pass: the output tokens ``y^`` through the autoencoder (its nearest codes, as a target in
        training), then the decoder: ``y' = argmax D(q(A(y^, x)), x)``. The decoder learned to read the codes the
        autoencoder gives a target; the prior's codes differ from those, the autoencoder's codes of ``y^`` less so.
        Cost: one autoencoder and one decoder pass (parallel), no prior steps."""
        from fairseq.data import data_utils

        rows = [sentence_output(tokens, scores, length, self.pad, self.eos)[0]
                for tokens, scores, length in zip(out.tokens, out.log_probs, out.lengths.tolist(), strict=True)]
        target = data_utils.collate_tokens(rows, self.pad, self.eos, left_pad=False)  # (B, T) right-padded
        latents = self.autoencode(src_lengths, target, enc, enc_pad)  # nearest codes in eval mode
        return self.decode_codes(latents.vq.codes, latents.lengths, enc, enc_pad)

    def _translate_once(self, enc: Tensor, enc_pad: Tensor, src_lengths: Tensor, latent_beam: int,
                        codes: Tensor | None, lengths: Tensor | None, length_ratio: float | None,
                        length_offset: int | None) -> Translation:
        if lengths is None:
            lengths = self._predicted_lengths(enc, enc_pad, src_lengths, length_ratio, length_offset)
        num_latents = int(lengths.max()) // self.factor
        if codes is not None:
            if codes.shape[1] < num_latents or bool((lengths % self.factor).any()):
                raise ValueError(f"codes of {codes.shape[1]} latents cannot be read at lengths up to "
                                 f"{int(lengths.max())} (multiples of {self.factor} needed)")
            return self.decode_codes(codes[:, :num_latents], lengths, enc, enc_pad)
        if latent_beam > 1:
            candidates = self._candidates(enc, enc_pad, lengths, latent_beam)
            return Translation(*(field[:, 0] for field in candidates[:4]))
        return self.decode_codes(self.prior.greedy(num_latents, enc, enc_pad), lengths, enc, enc_pad)

    @torch.no_grad()
    def translate_candidates(self, src_tokens: Tensor, src_lengths: Tensor, num_candidates: int,
                             length_ratio: float | None = None,
                             length_offset: int | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The ``n`` best latent sequences of a beam search over the prior, each decoded in one parallel pass
        (all ``B * n`` in the same decoder call).

        Returns tokens ``[B, n, T']``, log_probs ``[B, n, T']``, lengths ``[B, n]``, codes ``[B, n, L, H]`` and the
        prior's log-probability of each latent sequence ``[B, n]`` (best first). Rescoring the candidates, e.g. with
        the autoregressive teacher, is noisy parallel decoding (:mod:`vqnat.rescoring`).
        """
        enc, enc_pad = self.encode(src_tokens)
        lengths = self._predicted_lengths(enc, enc_pad, src_lengths, length_ratio, length_offset)
        return self._candidates(enc, enc_pad, lengths, num_candidates)

    def _predicted_lengths(self, enc: Tensor, enc_pad: Tensor, src_lengths: Tensor, length_ratio: float | None,
                           length_offset: int | None) -> Tensor:
        """T'_b ``[B]`` at inference: the length rule on the source encoding (see :meth:`target_lengths`)."""
        return self.target_lengths(src_lengths, length_logits=self.predict_length_logits(enc, enc_pad),
                                   length_ratio=length_ratio, length_offset=length_offset)

    def _candidates(self, enc: Tensor, enc_pad: Tensor, lengths: Tensor,
                    n: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        codes, prior_scores = self.prior.beam(lengths // self.factor, n, enc, enc_pad)  # (B, n, L, H), (B, n)
        b = len(lengths)
        out = self.decode_codes(codes.flatten(0, 1), lengths.repeat_interleave(n),
                                enc.repeat_interleave(n, dim=0), enc_pad.repeat_interleave(n, dim=0))
        return (out.tokens.view(b, n, -1), out.log_probs.view(b, n, -1), out.lengths.view(b, n), codes,
                prior_scores)

    def decode_codes(self, codes: Tensor, lengths: Tensor, enc: Tensor, enc_pad: Tensor) -> Translation:
        """Codes ``[B, L, H]`` at lengths ``[B]`` -> the decoder's argmax tokens ``[B, T']``, cut after the first
        EOS, given the source encoding."""
        hidden = self.decode(self.code_latents(codes), lengths, enc, enc_pad, project=False)  # (B, T', D)
        valid = _length_mask(lengths, hidden.shape[1])  # (B, T')
        # Project only each sentence's own positions (not the batch padding) onto the vocabulary. The argmax's
        # log-probability is -log sum_v exp(l_v - max), computed in place in the fresh logits buffer (no
        # log_softmax or logsumexp temporaries over V).
        logits = self.output_projection(hidden[valid]).float()  # (N, V), a new tensor
        best, index = logits.max(-1)  # (N,)
        log_norm = logits.sub_(best.unsqueeze(-1)).exp_().sum(-1).log_()  # (N,)
        tokens = torch.full(valid.shape, self.pad, dtype=torch.long, device=hidden.device)
        log_probs = hidden.new_zeros(valid.shape, dtype=torch.float32)
        tokens[valid], log_probs[valid] = index, -log_norm
        is_eos = tokens.eq(self.eos) & valid
        # Length up to the first EOS; without an EOS, the whole T'_b (an EOS is appended by the caller).
        first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, lengths)
        keep = _length_mask(first_eos, tokens.shape[1])
        return Translation(tokens.masked_fill(~keep, self.pad), log_probs.masked_fill(~keep, 0.0), first_eos, codes)

    def code_latents(self, codes: Tensor) -> Tensor:
        """Codes ``[B, L, H]`` -> the latents the decoder reads ``[B, L, D]``: each slice's code vector, joined."""
        latents = self.bottleneck.codebook.lookup(codes.flatten(0, 1))  # (B*L, H, Dh)
        return latents.reshape(*codes.shape[:2], -1)

    def _positions(self, nonpad: Tensor) -> Tensor:
        positions = positions_from_mask(nonpad)  # (B, T)
        if int(positions.max()) >= len(self.position_table):
            raise ValueError(f"sequence of {int(positions.max()) + 1} positions is longer than "
                             f"max_target_positions={self.cfg.max_target_positions}")
        return self.position_table[positions]  # (B, T, D)


def _length_mask(lengths: Tensor, max_length: int) -> Tensor:
    """``[B] -> [B, T]`` bool, True at positions < length."""
    return torch.arange(max_length, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


# ---------------------------------------------------------------------- presets (sizes, and the big model's dropout)
# `--arch vqnat_latent_transformer` (registered with the model) is the dataclass defaults.
def _preset(name: str, **sizes: int | float) -> None:
    def apply(args) -> None:
        for key, value in sizes.items():
            setattr(args, key, getattr(args, key, value))

    apply.__name__ = name
    register_model_architecture(MODEL_NAME, name)(apply)


_preset("vqnat_lt_tiny", embed_dim=32, ffn_dim=64, attention_heads=2, encoder_layers=1, decoder_layers=1,
        autoencoder_layers=1, prior_layers=1, codebook_size=64)
# prior_layers=2: what the Bible GPU runs used (results/gpu_pipeline_bible_h200.json); the prior's steps are cheap
# with key/value caches.
_preset("vqnat_lt_cpu", embed_dim=256, ffn_dim=1024, attention_heads=4, encoder_layers=3, decoder_layers=3,
        autoencoder_layers=1, prior_layers=2, codebook_size=1024)
_preset("vqnat_lt_small", embed_dim=384, ffn_dim=1536, attention_heads=6, encoder_layers=3, decoder_layers=3,
        autoencoder_layers=2, prior_layers=2)
# base and big follow tensor2tensor's transformer_nat_base/_big: 6 layers everywhere, the latent prior included (t2t
# predicts the latents with a decoder of num_hidden_layers = 6), and for big its layer_prepostprocess_dropout 0.3
# (vqnat has one dropout, so attention and feed-forward dropout are 0.3 too, where t2t keeps them at 0.1).
_preset("vqnat_lt_base", embed_dim=512, ffn_dim=4096, attention_heads=8, encoder_layers=6, decoder_layers=6,
        prior_layers=6)
_preset("vqnat_lt_big", embed_dim=1024, ffn_dim=4096, attention_heads=16, encoder_layers=6, decoder_layers=6,
        prior_layers=6, dropout=0.3)
