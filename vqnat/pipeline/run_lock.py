"""One training run per save folder: an exclusive lock on ``<save_dir>/train.lock`` for as long as it runs.

The lock is an ``flock`` on an open file: the kernel drops it when every process holding the file has exited,
so a killed run never leaves a stale lock. The trainer process inherits the descriptor, so the lock lasts until
both the ``vqnat`` process and fairseq-train have ended.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "train.lock"


@contextmanager
def locked_save_dir(save_dir: Path) -> Iterator[int]:
    """Create ``save_dir`` and hold its lock; yields the lock's file descriptor (pass it to the trainer).

    Raises ``ValueError`` (one line, with the other run's process id) when another run holds it.
    """
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            raise ValueError(f"another training run (process {holder}) is writing to {save_dir}: wait for it to "
                             f"end or stop it, or choose another --save-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield fd
    finally:
        os.close(fd)
