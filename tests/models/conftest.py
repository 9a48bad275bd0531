"""Tiny latent-transformer fixtures built on real Bible verse pairs (English WEB -> German Elberfelder)."""

from __future__ import annotations

import pytest
import torch
from fairseq.data import Dictionary

from vqnat.models.latent_transformer import LatentTransformerConfig, LatentTransformerModel


@pytest.fixture(scope="session")
def real_pairs() -> list[tuple[str, str]]:
    from tests.fixtures_fairseq import genesis_pairs

    return genesis_pairs(200)


@pytest.fixture(scope="session")
def word_dict(real_pairs) -> Dictionary:
    d = Dictionary()
    for src, tgt in real_pairs:
        for word in (src + " " + tgt).split():
            d.add_symbol(word)
    d.finalize(padding_factor=1)
    return d


def encode_batch(sentences: list[str], d: Dictionary, left_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitespace words -> ``[B, T]`` ids ending in EOS, padded; and lengths ``[B]``."""
    rows = [torch.tensor([d.index(w) for w in s.split()] + [d.eos()]) for s in sentences]
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.full((len(rows), int(lengths.max())), d.pad())
    for i, r in enumerate(rows):
        if left_pad:
            out[i, out.shape[1] - len(r):] = r
        else:
            out[i, : len(r)] = r
    return out, lengths


def tiny_model(d: Dictionary, **overrides) -> LatentTransformerModel:
    # Random codes and no reseeding: on a handful of sentences (a few dozen latents) most codes are always unused,
    # so reseeding would keep moving them and the tests are about the model's mechanics, not codebook health.
    sizes = dict(embed_dim=32, ffn_dim=64, attention_heads=2, encoder_layers=1, decoder_layers=1,
                 autoencoder_layers=1, prior_layers=1, codebook_size=32, dropout=0.0, no_kmeans_init=True,
                 no_reseed_dead_codes=True)
    sizes.update(overrides)
    return LatentTransformerModel(LatentTransformerConfig(**sizes), d, d)
