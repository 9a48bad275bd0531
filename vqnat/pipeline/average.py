"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one training run.

fairseq ships this as ``scripts/average_checkpoints.py`` in its source tree, which a pip install does not have.
Averaging the last few checkpoints of a run smooths the noise of the last updates (Vaswani et al. 2017 average the
last 5 or 20). For the latent transformer the codebook is averaged too: its codes move slowly (EMA decay 0.999), so
the mean of nearby checkpoints' codes stays close to what their decoders read.

Floating-point tensors are averaged in float32 and stored in their own dtype; integer and boolean tensors (update
counters, flags) come from the newest checkpoint, as does everything else in it (config, training state). The
optimizer state is dropped: an averaged checkpoint is for translation (or for ``--finetune-from-model``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from vqnat.checkpoint import drop_training_state, read_checkpoint_as_saved

INTERVAL_NAME = re.compile(r"checkpoint_(\d+)_(\d+)\.pt$")  # --save-interval-updates: epoch, updates
EPOCH_NAME = re.compile(r"checkpoint(\d+)\.pt$")  # one per epoch (without --no-epoch-checkpoints)


def checkpoint_updates(path: str | Path, trust: bool = False) -> int:
    """Updates a fairseq checkpoint had trained for (from its optimizer history)."""
    state = read_checkpoint_as_saved(path, trust)
    try:
        return int(state["optimizer_history"][-1]["num_updates"])
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{path} has no training history: not a checkpoint written by fairseq-train") from err


def numbered_checkpoints(save_dir: str | Path) -> list[Path]:
    """The interval checkpoints (``checkpoint_<epoch>_<updates>.pt``) of ``save_dir``, oldest first; without any,
    the epoch checkpoints (``checkpoint<epoch>.pt``). ``checkpoint_best/last.pt`` are copies of one of these (or
    of the newest state) and are not included."""
    folder = Path(save_dir)
    interval = {int(m.group(2)): p for p in folder.glob("checkpoint_*_*.pt") if (m := INTERVAL_NAME.search(p.name))}
    if interval:
        return [interval[k] for k in sorted(interval)]
    epochs = {int(m.group(1)): p for p in folder.glob("checkpoint*.pt") if (m := EPOCH_NAME.search(p.name))}
    return [epochs[k] for k in sorted(epochs)]


def last_checkpoints(save_dir: str | Path, count: int) -> list[Path]:
    """The ``count`` newest numbered checkpoints of a run (see :func:`numbered_checkpoints`), oldest first."""
    if count < 1:
        raise ValueError(f"--last must be at least 1, got {count}")
    if not Path(save_dir).is_dir():
        raise FileNotFoundError(f"no such folder: {save_dir}")
    found = numbered_checkpoints(save_dir)
    if len(found) < count:
        raise ValueError(f"{save_dir} has {len(found)} numbered checkpoints, fewer than the {count} asked for "
                         "(train with --save-interval-updates N, or without --no-epoch-checkpoints)")
    return found[-count:]


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, trust: bool = False) -> dict[str, object]:
    """Write the average of ``paths`` to ``out``; returns what was averaged (paths, tensors, updates).

    The checkpoints must hold the same tensors with the same shapes (one run's checkpoints do). Each is read with
    :func:`~vqnat.checkpoint.read_checkpoint_as_saved`: from outside a vqnat training folder only with ``trust``."""
    if not paths:
        raise ValueError("no checkpoints to average")
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such checkpoint: {path}")
    sums: dict[str, torch.Tensor] = {}
    newest = None
    for index, path in enumerate(paths):
        state = read_checkpoint_as_saved(path, trust)
        weights = state["model"]
        if index == 0:
            reference = {k: tuple(v.shape) for k, v in weights.items()}
        elif {k: tuple(v.shape) for k, v in weights.items()} != reference:
            raise ValueError(f"{path} does not hold the same tensors as {paths[0]}: checkpoints of one run only")
        for key, value in weights.items():
            if value.is_floating_point():
                sums[key] = sums[key] + value.float() if key in sums else value.float().clone()
        newest = state
    averaged = {key: (sums[key] / len(paths)).to(value.dtype) if key in sums else value
                for key, value in newest["model"].items()}
    newest["model"] = averaged
    drop_training_state(newest)
    newest["extra_state"] = {**(newest.get("extra_state") or {}), "averaged_from": [str(p) for p in paths]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(newest, out)
    return {"checkpoints": [str(p) for p in paths], "averaged_tensors": len(sums), "out": str(out),
            "updates": int(newest["optimizer_history"][-1]["num_updates"]) if newest.get("optimizer_history")
            else None}
