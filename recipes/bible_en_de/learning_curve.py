"""BLEU of every checkpoint a training left behind, against its number of updates: a learning curve
(:mod:`vqnat.pipeline.learning_curve`).

    python recipes/bible_en_de/learning_curve.py work/warm/nat_soft_lenpred work/bible-distilled \
        --out results/learning_curve_warm_start_bible.json --label "NAT soft EM, warm start on CPU" \
        --reference-bleu 18.38 --reference-label "teacher greedy (test)" [--compare other_curve.json]

Translates each split (``--splits``, default valid,test) of the prepared folder with every interval checkpoint
and ``checkpoint_last.pt`` of the save folder, writes the rows and the checkpoint selected by the first split's
BLEU (choose on valid, report test) to ``--out``, and a plot next to it (``.png``); ``--compare`` draws earlier
runs' curves (this script's JSON) in the same plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqnat.inference import DecodingOptions
from vqnat.pipeline.learning_curve import DEFAULT_BATCH_SIZE, DEFAULT_SPLITS, learning_curve, read_curve, write_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("save_dir", type=Path)
    parser.add_argument("prepared", type=Path, help="folder written by vqnat prepare / vqnat distill")
    parser.add_argument("--out", type=Path, required=True, help="JSON file; the plot goes next to it (.png)")
    parser.add_argument("--splits", default=",".join(DEFAULT_SPLITS), help="comma-separated; the first one selects")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--label", default="model")
    parser.add_argument("--reference-bleu", type=float)
    parser.add_argument("--reference-label", default="reference")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="another run's curve (this script's JSON) to draw in the same plot; repeatable")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="read checkpoints from outside a vqnat training folder (only if you trust their source)")
    parser.add_argument("--collapse-repeats", action=argparse.BooleanOptionalAction, default=None,
                        help="merge a token repeated by neighbouring decoder positions (default: as each checkpoint "
                        "says)")
    args = parser.parse_args()
    try:
        others = [read_curve(path) for path in args.compare]
        splits = [s.strip() for s in args.splits.split(",") if s.strip()]
        report = learning_curve(args.save_dir, args.prepared, splits, args.batch_size, args.label,
                                args.reference_bleu, args.reference_label, command=" ".join(sys.argv),
                                trust=args.trust_checkpoint,
                                options=DecodingOptions(collapse_repeated_tokens=args.collapse_repeats))
    except ValueError as err:  # includes UntrustedCheckpointError
        raise SystemExit(f"Error: {err}") from None
    plot = write_curve(report, args.out, others)
    selected = report["selected"]
    print(f"selected by {splits[0]} BLEU: {selected['checkpoint']} ({selected['updates']} updates): "
          + ", ".join(f"{s} {selected['bleu'][s]:.2f}" for s in splits))
    print(f"wrote {args.out} and {plot}")


if __name__ == "__main__":
    main()
