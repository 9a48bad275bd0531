"""Run fairseq's command-line tools (train, generate, preprocess) with vqnat's plugins, logging to a file."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import vqnat
from vqnat.checkpoint import trusted_checkpoint_env

logger = logging.getLogger(__name__)

USER_DIR = str(Path(vqnat.__file__).parent)


# fairseq's "simple" progress lines: "fairseq.logging.progress_bar | :     40 / 716 wps=..." (generate) and
# "train_inner | epoch 001:     50 / 268 loss=..." (train).
_PROGRESS = re.compile(r"(?:progress_bar|train_inner)\b.*?(\d+) / (\d+)\b")


class FairseqError(RuntimeError):
    """A fairseq tool exited with an error; the message holds the end of its output."""


def progress_position(line: str) -> tuple[int, int] | None:
    """``(done, total)`` from one of fairseq's simple progress lines, or None for any other line."""
    match = _PROGRESS.search(line)
    return (int(match.group(1)), int(match.group(2))) if match else None


def fairseq_command(tool: str, args: Sequence[str]) -> list[str]:
    """``python -m fairseq_cli.<tool> <args>`` with this interpreter."""
    return [sys.executable, "-m", f"fairseq_cli.{tool}", *map(str, args)]


def run_fairseq(tool: str, args: Sequence[str], log_path: Path | None = None, echo: bool = False,
                keep_output: bool = True, progress: str | None = None) -> str:
    """Run a fairseq tool to completion and return its combined output.

    Output goes line by line to ``log_path`` (appended) and, with ``echo``, to stderr so long trainings show
    their progress. ``keep_output=False`` returns only the last lines (a corpus-sized fairseq-generate must not be
    held in memory). ``progress`` (a description) shows a progress bar driven by fairseq's progress lines (run the
    tool with ``--log-format simple``). Raises :class:`FairseqError` with the last lines of output when the tool
    fails.
    """
    cmd = fairseq_command(tool, args)
    logger.info("running: %s", " ".join(cmd))
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=25)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=progress, unit="batch", dynamic_ncols=True)
    log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    try:
        if log:
            log.write("$ " + " ".join(cmd) + "\n")
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=trusted_checkpoint_env(), bufsize=1) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if keep_output:
                    lines.append(line)
                tail.append(line)
                if bar is not None and (position := progress_position(line)):
                    if bar.total != position[1] or position[0] < bar.n:  # a new epoch or split
                        bar.reset(total=position[1])
                    bar.update(position[0] - bar.n)  # redraws at most every tqdm mininterval
                if log:
                    log.write(line)
                    log.flush()
                if echo:
                    sys.stderr.write(line)
            code = proc.wait()
    finally:
        if log:
            log.close()
        if bar is not None:
            bar.close()
    if code != 0:
        raise FairseqError(f"fairseq-{tool} failed (exit {code}):\n" + "".join(tail))
    return "".join(lines if keep_output else tail)
