"""Run fairseq's command-line tools (train, generate, preprocess) with vqnat's plugins, logging to a file.

The tool runs as a child process that never outlives this one: it is in its own process group, this process
forwards SIGINT/SIGTERM/SIGHUP to it, and on Linux the kernel sends it SIGTERM when this process dies, even by
``kill -9`` (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from vqnat.checkpoint import trusted_checkpoint_env

logger = logging.getLogger(__name__)

USER_DIR = str(Path(__file__).resolve().parent.parent)  # the vqnat package: fairseq's --user-dir

# fairseq's "simple" progress lines: "fairseq.logging.progress_bar | :     40 / 716 wps=..." (generate) and
# "train_inner | epoch 001:     50 / 268 loss=..." (train).
_PROGRESS = re.compile(r"(?:progress_bar|train_inner)\b.*?(\d+) / (\d+)\b")
# The line that names what went wrong: a Python exception ("ValueError: ...") or argparse ("train.py: error: ...").
_ERROR_LINE = re.compile(r"^[\w.]+(?:Error|Exception)\b(?::|$)|: error: ")
TAIL_LINES = 40  # lines of output kept when the rest is not (enough to hold an error and the noise after it)
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class FairseqError(RuntimeError):
    """A fairseq tool exited with an error; the message is its error line (the whole output is in its log)."""


def progress_position(line: str) -> tuple[int, int] | None:
    """``(done, total)`` from one of fairseq's simple progress lines, or None for any other line."""
    match = _PROGRESS.search(line)
    return (int(match.group(1)), int(match.group(2))) if match else None


def error_line(output: Sequence[str]) -> str:
    """The line of a failed tool's output that says what went wrong (else its last non-empty line)."""
    lines = [line.strip() for line in output if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else "no output"


def fairseq_command(tool: str, args: Sequence[str]) -> list[str]:
    """fairseq's ``<tool>`` with this interpreter, vqnat imported first (see :mod:`vqnat.pipeline.fairseq_main`)."""
    return [sys.executable, "-m", "vqnat.pipeline.fairseq_main", tool, *map(str, args)]


def run_fairseq(tool: str, args: Sequence[str], log_path: Path | None = None,
                echo: bool | Callable[[str], bool] = False, keep_output: bool = True, progress: str | None = None,
                pass_fds: Sequence[int] = ()) -> str:
    """Run a fairseq tool to completion and return its combined output.

    Output goes line by line to ``log_path`` (appended) and, with ``echo``, to stderr: every line, or those for
    which ``echo(line)`` is true. ``keep_output=False`` returns only the last lines (a corpus-sized
    fairseq-generate must not be held in memory). ``progress`` (a description) shows a progress bar driven by
    fairseq's progress lines (run the tool with ``--log-format simple``). ``pass_fds``: file descriptors the tool
    inherits (a lock it must hold while it runs). Raises :class:`FairseqError` with the tool's error line when it
    fails, and ``KeyboardInterrupt`` when a forwarded signal stopped it.
    """
    cmd = fairseq_command(tool, args)
    logger.debug("running: %s", " ".join(cmd))  # the log file has it too
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    show = echo if callable(echo) else (lambda line: echo)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=progress, unit="batch", dynamic_ncols=True)
    log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    try:
        if log:
            log.write("$ " + " ".join(cmd) + "\n")
        with start_child(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=trusted_checkpoint_env(), bufsize=1, pass_fds=tuple(pass_fds)) as proc, \
                forwarding_signals(proc) as forwarded:
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
                if show(line):
                    sys.stderr.write(line)
            code = proc.wait()
        if bar is not None and code == 0 and bar.total:
            bar.update(bar.total - bar.n)  # fairseq logs every few batches: the last ones finish the bar
    finally:
        if log:
            log.close()
        if bar is not None:
            bar.close()
    if forwarded:
        raise KeyboardInterrupt(f"fairseq-{tool} stopped by signal {forwarded[0]}")
    if code != 0:
        where = f" (full output: {log_path})" if log_path else ""
        raise FairseqError(f"fairseq-{tool} failed (exit {code}): {error_line(tail)}{where}")
    return "".join(lines if keep_output else tail)


def run_fairseq_parallel(jobs: Mapping[str, tuple[str, Sequence[str]]], log_dir: str | Path, *,
                         threads_each: int | None = None, timeout: float | None = None,
                         fail_fast: bool = True) -> dict[str, str]:
    """Run several fairseq tools side by side, ``{name: (tool, args)}``, each logging to ``LOG_DIR/NAME.log``;
    returns ``{name: output}``. Small models leave a GPU (or the start-up of several processes a CPU) mostly idle.

    ``threads_each`` caps each job's torch threads (side by side on a CPU, one thread each beats all cores each).
    A job still running after ``timeout`` seconds (all jobs together) is killed and counts as failed. When a job
    fails, the others are stopped (``fail_fast``) or run to the end, and :class:`FairseqError` names each failed
    job with its error line and log. The children never outlive this process (see :func:`start_child`).
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = trusted_checkpoint_env()
    if threads_each is not None:
        env = {**env, "OMP_NUM_THREADS": str(threads_each), "MKL_NUM_THREADS": str(threads_each)}
    deadline = None if timeout is None else time.monotonic() + timeout
    running: dict[str, subprocess.Popen] = {}
    failed: dict[str, str] = {}
    try:
        for name, (tool, args) in jobs.items():
            cmd = fairseq_command(tool, args)
            with open(log_dir / f"{name}.log", "w", encoding="utf-8") as log:
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                running[name] = start_child(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        for name, proc in running.items():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                code = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = f"killed after {timeout:g} s"
            if code != 0:
                failed[name] = f"exit {code}" if isinstance(code, int) else code
                if fail_fast:
                    break
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = {name: (log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace") for name in running}
    if failed:
        raise FairseqError("; ".join(
            f"{name}: fairseq-{jobs[name][0]} failed ({why}): {error_line(outputs[name].splitlines()[-TAIL_LINES:])} "
            f"(full output: {log_dir / f'{name}.log'})" for name, why in failed.items()))
    return outputs


def start_child(cmd: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` for a tool that must not outlive this process: its own process group (a Ctrl-C
    reaches it only through :func:`forwarding_signals`), no terminal input, and SIGTERM when this process dies."""
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=_die_with_parent(),
                            **popen_kwargs)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child, between fork and exec, only calls it
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@contextmanager
def forwarding_signals(proc: subprocess.Popen) -> Iterator[list[int]]:
    """While the child runs, SIGINT/SIGTERM/SIGHUP sent to this process go to it instead; yields the list of
    signals forwarded (empty when none). Only the main thread can set handlers: elsewhere nothing is forwarded."""
    forwarded: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield forwarded
        return

    def forward(signum: int, frame: object) -> None:
        forwarded.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED_SIGNALS}
    try:
        yield forwarded
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
