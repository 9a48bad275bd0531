"""Shrink a fairseq checkpoint for transport (fp16 chunks, no optimizer state), and join the chunks back into a
loadable fp32 checkpoint: :func:`vqnat.checkpoint_tools.pack_checkpoint` / ``unpack_checkpoint``.

    python recipes/bible_en_de/export_weights.py pack work/nat-soft/checkpoint_last.pt OUT/nat_soft --inference-only
    python recipes/bible_en_de/export_weights.py unpack OUT/nat_soft work/nat_soft.pt --trust-checkpoint

``--inference-only`` (latent transformer) leaves out what translation never runs (the target autoencoder, the
compressor, the codebook's EMA sums): they come back as zeros and the checkpoint is marked inference-only, so it
translates exactly as the original but cannot resume training (``warm_start.py`` makes it trainable again).
Chunks and checkpoints from outside a ``vqnat train`` folder are pickles from elsewhere: ``--trust-checkpoint``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vqnat.checkpoint_tools import DEFAULT_CHUNK_MB, pack_checkpoint, unpack_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    pack = sub.add_parser("pack", help="checkpoint -> PREFIX.part0, PREFIX.part1, ...")
    pack.add_argument("checkpoint", type=Path)
    pack.add_argument("prefix", type=Path)
    pack.add_argument("--chunk-mb", type=int, default=DEFAULT_CHUNK_MB, help="MiB per chunk")
    pack.add_argument("--inference-only", action="store_true", help="leave out what only training needs")
    unpack = sub.add_parser("unpack", help="PREFIX.part* -> checkpoint")
    unpack.add_argument("prefix", type=Path)
    unpack.add_argument("checkpoint", type=Path)
    for command in (pack, unpack):
        command.add_argument("--trust-checkpoint", action="store_true",
                             help="read a pickle from outside a vqnat training folder (only if you trust its source)")
    args = parser.parse_args()
    try:
        if args.cmd == "pack":
            for path in pack_checkpoint(args.checkpoint, args.prefix, args.chunk_mb, args.inference_only,
                                        trust=args.trust_checkpoint):
                print(path, path.stat().st_size)
        else:
            print(unpack_checkpoint(args.prefix, args.checkpoint, trust=args.trust_checkpoint))
    except ValueError as err:  # includes UntrustedCheckpointError
        raise SystemExit(f"Error: {err}") from None


if __name__ == "__main__":
    main()
