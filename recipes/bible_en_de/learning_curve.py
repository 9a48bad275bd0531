"""BLEU of every checkpoint a training left behind, against its number of updates: a learning curve.

    python recipes/bible_en_de/learning_curve.py SAVE_DIR PREPARED --out results/curve.json
        [--splits valid,test] [--label "nat soft (warm start)"]
        [--reference-bleu 18.38 --reference-label "teacher greedy (test)"] [--compare other_curve.json]

Reads ``checkpoint_<epoch>_<updates>.pt`` (``--save-interval-updates``) and ``checkpoint_last.pt`` (or the epoch
checkpoints) in SAVE_DIR, translates each split of the prepared folder with each (greedy, as ``vqnat evaluate
translation``), and writes the rows (updates, BLEU and chrF per split) to ``--out`` and a plot next to it
(``.png``). ``selected`` names the checkpoint with the best BLEU on the first split: choose on valid, report test.
A horizontal line marks a reference score, e.g. the teacher's greedy BLEU, when given; ``--compare`` draws the
curves of earlier runs (this script's JSON) in the same plot, for runs trained side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vqnat.inference import Translator  # noqa: E402
from vqnat.pipeline.average import INTERVAL_NAME, checkpoint_updates, numbered_checkpoints  # noqa: E402
from vqnat.pipeline.evaluate import evaluate_checkpoint  # noqa: E402
from vqnat.pipeline.prepared import open_prepared  # noqa: E402


def find_checkpoints(save_dir: Path) -> list[tuple[int, Path]]:
    """(updates, path) of the interval checkpoints and checkpoint_last.pt, by updates, without duplicates."""
    found = {}
    for path in numbered_checkpoints(save_dir):
        match = INTERVAL_NAME.search(path.name)
        found[int(match.group(2)) if match else checkpoint_updates(path)] = path
    last = save_dir / "checkpoint_last.pt"
    if last.exists():
        found.setdefault(checkpoint_updates(last), last)
    if not found:
        raise SystemExit(f"no checkpoint_*_*.pt or checkpoint_last.pt in {save_dir}")
    return sorted(found.items())


def plot_curve(curves: list[tuple[str, list[dict[str, object]]]], path: Path, reference: float | None,
               reference_label: str) -> None:
    """One line per (run, split): ``curves`` holds each run's label and rows; the first run's lines are solid."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font search logs at DEBUG otherwise
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run, (label, rows) in enumerate(curves):
        for split in rows[0]["bleu"]:
            ax.plot([r["updates"] for r in rows], [r["bleu"][split] for r in rows], marker="o",
                    linestyle="-" if run == 0 else "--", label=f"{label}, {split}")
    if reference is not None:
        ax.axhline(reference, color="gray", linestyle="--", label=reference_label)
    ax.set_xlabel("updates")
    ax.set_ylabel("sacreBLEU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("save_dir", type=Path)
    parser.add_argument("prepared", type=Path, help="folder written by vqnat prepare / vqnat distill")
    parser.add_argument("--out", type=Path, required=True, help="JSON file; the plot goes next to it (.png)")
    parser.add_argument("--splits", default="valid,test", help="comma-separated; the first one selects")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--label", default="model")
    parser.add_argument("--reference-bleu", type=float)
    parser.add_argument("--reference-label", default="reference")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="another run's curve (this script's JSON) to draw in the same plot; repeatable")
    args = parser.parse_args()
    others = []
    for other in args.compare:
        if not other.is_file():
            parser.error(f"--compare {other}: no such file")
        earlier = json.loads(other.read_text(encoding="utf-8"))
        others.append((earlier["label"], earlier["rows"]))

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    data_bin = open_prepared(args.prepared).data_bin
    rows = []
    for updates, path in tqdm(find_checkpoints(args.save_dir), desc="checkpoints", unit="ckpt"):
        row: dict[str, object] = {"updates": updates, "checkpoint": path.name, "bleu": {}, "chrf": {}}
        translator = Translator.load(path, data_dir=data_bin)  # loaded once for all splits
        for split in splits:
            result = evaluate_checkpoint(path, args.prepared, split=split, batch_size=args.batch_size,
                                         translator=translator)
            row["bleu"][split], row["chrf"][split] = result["bleu"], result["chrf"]
        rows.append(row)
        scores = "  ".join(f"{s} BLEU {row['bleu'][s]:.2f} chrF {row['chrf'][s]:.1f}" for s in splits)
        tqdm.write(f"{updates:>6} updates  {scores}  {path.name}")
    selected = max(rows, key=lambda r: r["bleu"][splits[0]])
    report = {"command": " ".join(sys.argv), "save_dir": str(args.save_dir), "splits": splits,
              "label": args.label, "bleu_signature": result["bleu_signature"], "rows": rows,
              "selected": {"by": f"best {splits[0]} BLEU", **selected}}
    if args.reference_bleu is not None:
        report["reference"] = {"label": args.reference_label, "bleu": args.reference_bleu}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_curve([(args.label, rows), *others], args.out.with_suffix(".png"), args.reference_bleu,
               args.reference_label)
    print(f"selected by {splits[0]} BLEU: {selected['checkpoint']} ({selected['updates']} updates): "
          + ", ".join(f"{s} {selected['bleu'][s]:.2f}" for s in splits))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
