"""Codebook usage of the latent transformer early in training: random vs k-means initialisation (vs reseeding).

    python recipes/bible_en_de/codebook_usage.py {plain,kmeans,reseed} [--steps 120]

Trains a small latent transformer (2+2 layers, 128 dim, 512 codes, soft EM) on the first 3,000 prepared Bible
pairs (``vqnat prepare bible --out work/bible``), one thread, batches of 48 sentences, and prints the named loss
terms with the usage perplexity and dead-code fraction every 20 updates.
"""

from __future__ import annotations

import argparse

import torch
from fairseq.data import Dictionary

from vqnat.criterions.latent_transformer_loss import latent_terms
from vqnat.models.latent_transformer import LatentTransformerConfig, LatentTransformerModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("init", choices=["plain", "kmeans", "reseed"])
    parser.add_argument("--prepared", default="work/bible")
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = Dictionary.load(f"{args.prepared}/data-bin/dict.en.txt")
    src = open(f"{args.prepared}/spm/train.en", encoding="utf-8").read().splitlines()[:3000]
    tgt = open(f"{args.prepared}/spm/train.de", encoding="utf-8").read().splitlines()[:3000]

    def batch(lines: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [d.encode_line(line, add_if_not_exist=False).long()[:60] for line in lines]
        out = torch.full((len(rows), max(map(len, rows))), d.pad())
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out, torch.tensor([len(r) for r in rows])

    cfg = LatentTransformerConfig(embed_dim=128, ffn_dim=256, attention_heads=4, encoder_layers=2, decoder_layers=2,
                                  autoencoder_layers=1, prior_layers=1, codebook_size=512,
                                  no_kmeans_init=args.init == "plain",
                                  no_reseed_dead_codes=args.init != "reseed")
    model = LatentTransformerModel(cfg, d, d).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    shown = ("recon_loss", "prior_loss", "token_accuracy", "perplexity", "dead_fraction")
    for step in range(args.steps):
        i = (step * 48) % 2900
        s, s_len = batch(src[i : i + 48])
        t, _ = batch(tgt[i : i + 48])
        terms = latent_terms(model(s, s_len, t), 0.1)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        if step % 20 == 19:
            print(args.init, step + 1, {k: round(float(terms[k].detach()), 3) for k in shown}, flush=True)


if __name__ == "__main__":
    main()
