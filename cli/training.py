"""Running fairseq-train for ``vqnat train teacher|nat``: one run per save folder, resumable, readable output.

The terminal shows progress lines (every ``LOG_INTERVAL`` updates), validation results, checkpoint saves and
warnings; everything else fairseq prints (its configuration, the model, library warnings) goes to
``<save_dir>/train.log`` only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import typer
from vqnat_cli.errors import INTERRUPTED_EXIT, fail

_SHOWN = re.compile(r"\| (?:train_inner|train|valid|WARNING|ERROR) \||Saved checkpoint|Loaded checkpoint|"
                    r"done training|Stopping training|early stop")


def shown_on_terminal(line: str) -> bool:
    """Whether a line of fairseq-train's output goes to the terminal (every line goes to the log)."""
    return bool(_SHOWN.search(line))


def run_training(args: Sequence[str], save_dir: Path) -> None:
    """fairseq-train ``args`` writing to ``save_dir``: locked against a second run, a corrupt last checkpoint
    replaced by the newest intact one, Ctrl-C or a kill of this process stopping the trainer too."""
    from vqnat.pipeline.fairseq_run import run_fairseq
    from vqnat.pipeline.run_lock import locked_save_dir
    from vqnat.pipeline.safe_checkpoints import recover_last_checkpoint

    with locked_save_dir(save_dir) as lock:
        notice = recover_last_checkpoint(save_dir)
        if notice:
            typer.echo(notice, err=True)
        log = save_dir / "train.log"
        typer.echo(f"training in {save_dir}: progress below, the full output in {log}", err=True)
        try:
            run_fairseq("train", args, log_path=log, echo=shown_on_terminal, pass_fds=(lock,))
        except KeyboardInterrupt:
            fail(f"interrupted: the same command resumes from {save_dir / 'checkpoint_last.pt'}",
                 code=INTERRUPTED_EXIT)
