"""A learning curve: BLEU of every checkpoint a training left behind, against its number of updates.

The checkpoints are a save folder's ``checkpoint_<epoch>_<updates>.pt`` (``--save-interval-updates``) or epoch
checkpoints, and ``checkpoint_last.pt``; each translates each split of a prepared folder (greedy, as ``vqnat
evaluate translation``, through :func:`vqnat.pipeline.evaluate.evaluate_checkpoint`). ``selected`` is the row with
the best BLEU on the first split: choose on valid, report test. The report is JSON; :func:`plot_curves` draws one
or several runs' curves (runs trained side by side) with an optional reference line (e.g. the teacher's greedy
BLEU).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqnat.pipeline.average import INTERVAL_NAME, checkpoint_updates, numbered_checkpoints
from vqnat.pipeline.evaluate import evaluate_checkpoint

if TYPE_CHECKING:
    from vqnat.inference import DecodingOptions

DEFAULT_SPLITS = ("valid", "test")  # the first one selects
DEFAULT_BATCH_SIZE = 128
Row = dict[str, Any]  # {"updates": int, "checkpoint": name, "bleu": {split: BLEU}, "chrf": {split: chrF}}


def find_checkpoints(save_dir: str | Path, trust: bool = False) -> list[tuple[int, Path]]:
    """``(updates, path)`` of the numbered checkpoints and ``checkpoint_last.pt`` of ``save_dir``, by updates,
    without duplicates: interval checkpoints by the updates in their names, the others by their own count
    (``checkpoint_best.pt`` is a copy of one of them). ``trust``: see :func:`vqnat.checkpoint.check_trusted`."""
    save_dir = Path(save_dir)
    found: dict[int, Path] = {}
    for path in numbered_checkpoints(save_dir):
        match = INTERVAL_NAME.search(path.name)
        found[int(match.group(2)) if match else checkpoint_updates(path, trust)] = path
    last = save_dir / "checkpoint_last.pt"
    if last.exists():
        found.setdefault(checkpoint_updates(last, trust), last)
    if not found:
        raise ValueError(f"no checkpoint_*_*.pt, checkpoint<epoch>.pt or checkpoint_last.pt in {save_dir}")
    return sorted(found.items())


def select_checkpoint(rows: Sequence[Row], split: str) -> Row:
    """The row with the best BLEU on ``split`` (the first of equals, the one with fewer updates)."""
    return max(rows, key=lambda row: row["bleu"][split])


def learning_curve(save_dir: str | Path, prepared: str | Path, splits: Sequence[str] = DEFAULT_SPLITS,
                   batch_size: int = DEFAULT_BATCH_SIZE, label: str = "model", reference_bleu: float | None = None,
                   reference_label: str = "reference", command: str = "", trust: bool = False,
                   device: str = "cpu", options: DecodingOptions | None = None) -> dict[str, Any]:
    """Score every checkpoint of ``save_dir`` (:func:`find_checkpoints`) on ``splits`` of the prepared folder;
    returns the report: ``rows`` by updates, ``selected`` (best BLEU on ``splits[0]``), the sacreBLEU signature,
    ``label`` and the ``reference`` line for the plot, and the ``command`` that made it. ``options``: how every
    checkpoint decodes (e.g. collapsing repeated tokens; default: as each checkpoint says)."""
    from tqdm import tqdm

    from vqnat.inference import Translator
    from vqnat.pipeline.prepared import open_prepared

    if not splits:
        raise ValueError("no splits to score")
    data_bin = open_prepared(prepared).data_bin
    rows: list[Row] = []
    for updates, path in tqdm(find_checkpoints(save_dir, trust), desc="checkpoints", unit="ckpt"):
        row: Row = {"updates": updates, "checkpoint": path.name, "bleu": {}, "chrf": {}}
        translator = Translator.load(path, data_dir=data_bin, device=device, trust_checkpoint=trust,
                                     options=options)  # once
        for split in splits:
            result = evaluate_checkpoint(path, prepared, split=split, batch_size=batch_size, translator=translator)
            row["bleu"][split], row["chrf"][split] = result["bleu"], result["chrf"]
        rows.append(row)
        scores = "  ".join(f"{s} BLEU {row['bleu'][s]:.2f} chrF {row['chrf'][s]:.1f}" for s in splits)
        tqdm.write(f"{updates:>6} updates  {scores}  {path.name}")
    report: dict[str, Any] = {
        "command": command, "save_dir": str(save_dir), "splits": list(splits), "label": label,
        "bleu_signature": result["bleu_signature"], "rows": rows,
        "selected": {"by": f"best {splits[0]} BLEU", **select_checkpoint(rows, splits[0])}}
    if reference_bleu is not None:
        report["reference"] = {"label": reference_label, "bleu": reference_bleu}
    return report


def read_curve(path: str | Path) -> tuple[str, list[Row]]:
    """``(label, rows)`` of a report written by :func:`write_curve`, to draw next to another run's."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such learning curve")
    report = json.loads(path.read_text(encoding="utf-8"))
    return report["label"], report["rows"]


def write_curve(report: dict[str, Any], out: str | Path, compare: Sequence[tuple[str, list[Row]]] = ()) -> Path:
    """Write ``report`` as JSON to ``out`` and its plot (with the ``compare`` runs, dashed) next to it as
    ``.png``; returns the plot's path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    reference = report.get("reference") or {}
    plot = out.with_suffix(".png")
    plot_curves([(report["label"], report["rows"]), *compare], plot, reference.get("bleu"),
                reference.get("label", ""))
    return plot


def plot_curves(curves: Sequence[tuple[str, Sequence[Row]]], path: str | Path, reference: float | None,
                reference_label: str) -> None:
    """One line per (run, split): ``curves`` holds each run's label and rows; the first run's lines are solid, the
    others dashed; ``reference`` draws a horizontal line."""
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
