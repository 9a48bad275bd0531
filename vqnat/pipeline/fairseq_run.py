"""Run fairseq's command-line tools (train, generate, preprocess) with vqnat's plugins, logging to a file."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import vqnat
from vqnat.checkpoint import trusted_checkpoint_env

logger = logging.getLogger(__name__)

USER_DIR = str(Path(vqnat.__file__).parent)


class FairseqError(RuntimeError):
    """A fairseq tool exited with an error; the message holds the end of its output."""


def fairseq_command(tool: str, args: Sequence[str]) -> list[str]:
    """``python -m fairseq_cli.<tool> <args>`` with this interpreter."""
    return [sys.executable, "-m", f"fairseq_cli.{tool}", *map(str, args)]


def run_fairseq(tool: str, args: Sequence[str], log_path: Path | None = None, echo: bool = False) -> str:
    """Run a fairseq tool to completion and return its combined output.

    Output goes line by line to ``log_path`` (appended) and, with ``echo``, to stderr so long trainings show
    their progress. Raises :class:`FairseqError` with the last lines of output when the tool fails.
    """
    cmd = fairseq_command(tool, args)
    logger.info("running: %s", " ".join(cmd))
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=25)
    log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    try:
        if log:
            log.write("$ " + " ".join(cmd) + "\n")
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=trusted_checkpoint_env(), bufsize=1) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                tail.append(line)
                if log:
                    log.write(line)
                    log.flush()
                if echo:
                    sys.stderr.write(line)
            code = proc.wait()
    finally:
        if log:
            log.close()
    if code != 0:
        raise FairseqError(f"fairseq-{tool} failed (exit {code}):\n" + "".join(tail))
    return "".join(lines)
