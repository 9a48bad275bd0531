"""Make an inference-only latent-transformer checkpoint trainable again, to continue its training elsewhere:
:func:`vqnat.checkpoint_tools.warm_start`.

    python recipes/bible_en_de/warm_start.py work/gpu2/nat_soft_lenpred.pt work/bible-distilled/data-bin \
        work/warm/warm_soft_lenpred.pt --trust-checkpoint
    vqnat train nat ... --finetune-from-model work/warm/warm_soft_lenpred.pt

``export_weights.py pack --inference-only`` leaves out what translation never uses: the target autoencoder, the
compressor and the codebook's EMA sums. The warm start gives the autoencoder and the compressor a fresh random
initialisation (``--seed``); ``--codebook reinit`` (default) re-sets the codebook by k-means on the first batch, as
in a fresh run; ``--codebook keep`` keeps the codes and rebuilds the EMA sums from them and the counts (measured on
the Bible NAT: the fresh autoencoder then sent its latents to about 15 codes, usage perplexity 36 -> 15 over the
first 150 updates). Everything else (encoder, decoder, embeddings, prior, length predictor) keeps its weights; the
optimizer state and the run's progress are dropped (``--finetune-from-model`` resets optimizer and schedule).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vqnat.checkpoint_tools import CODEBOOK_CHOICES, warm_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="an unpacked --inference-only checkpoint (export_weights.py unpack)")
    parser.add_argument("data_bin", type=Path, help="the data-bin the model was trained on (for its dictionary)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--codebook", choices=CODEBOOK_CHOICES, default=CODEBOOK_CHOICES[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="read a pickle from outside a vqnat training folder (only if you trust its source)")
    args = parser.parse_args()
    try:
        count = warm_start(args.export, args.data_bin, args.out, args.codebook, args.seed, trust=args.trust_checkpoint)
    except ValueError as err:  # includes UntrustedCheckpointError
        raise SystemExit(f"Error: {err}") from None
    print(f"wrote {args.out}: {count} autoencoder/compressor tensors re-initialised, codebook: {args.codebook}")


if __name__ == "__main__":
    main()
