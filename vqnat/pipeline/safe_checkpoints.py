"""Checkpoints that a kill cannot corrupt, and recovery from one that an older run left corrupt.

fairseq-train writes each checkpoint once (to ``<name>.tmp``, then renamed) and copies it to the others
(``checkpoint_best.pt``, ``checkpoint_last.pt``) in place: a kill during a copy leaves a truncated file.
:func:`make_checkpoint_copies_atomic` makes those copies atomic too (copy to ``<name>.tmp``, then rename); it is
applied when vqnat's fairseq plugins are registered, so in every fairseq-train that runs with vqnat's
``--user-dir`` or imports vqnat.

:func:`recover_last_checkpoint` runs before a training resumes: a corrupt ``checkpoint_last.pt`` is set aside and
replaced by the newest intact checkpoint of the folder.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

LAST = "checkpoint_last.pt"


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` is at every moment either its old file or the complete copy."""
    tmp = f"{dst}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def make_checkpoint_copies_atomic() -> None:
    """Have fairseq's ``checkpoint_utils.save_checkpoint`` copy checkpoints with :func:`atomic_copy` (local files;
    remote paths keep fairseq's own copy). Idempotent."""
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager

    if getattr(checkpoint_utils.PathManager, "atomic_copies", False):
        return

    class AtomicCopyPathManager(PathManager):
        """fairseq's PathManager whose ``copy`` of a local file is atomic."""

        atomic_copies = True

        @staticmethod
        def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
            if PathManager.path_requires_pathmanager(dst_path):
                return PathManager.copy(src_path, dst_path, overwrite=overwrite)
            atomic_copy(src_path, dst_path)
            return True

    checkpoint_utils.PathManager = AtomicCopyPathManager


def is_intact(path: Path) -> bool:
    """Whether a checkpoint file is complete: torch's zip format ends with a directory of its members, each with a
    CRC, and a truncated or garbled file fails this check (read without unpickling anything). A file in torch's
    legacy format (a bare pickle) cannot be checked this way and counts as intact."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if head != b"PK\x03\x04":
        return head[:1] == b"\x80"  # the pickle protocol byte of the legacy format; anything else is garbage
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def recover_last_checkpoint(save_dir: Path) -> str | None:
    """Before resuming: if ``save_dir/checkpoint_last.pt`` is corrupt, move it to ``checkpoint_last.pt.corrupt``
    and copy the newest intact checkpoint of the folder in its place. Returns a one-line notice, or None when
    there was nothing to do."""
    last = save_dir / LAST
    if not last.is_file() or is_intact(last):
        return None
    aside = last.with_name(LAST + ".corrupt")
    os.replace(last, aside)
    candidates = sorted((p for p in save_dir.glob("checkpoint*.pt") if p.name != LAST),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        if is_intact(candidate):
            atomic_copy(str(candidate), str(last))
            return (f"{last} was corrupt (moved to {aside.name}): resuming from {candidate.name}, the newest "
                    "intact checkpoint")
    return f"{last} was corrupt (moved to {aside.name}) and no intact checkpoint remains: training starts over"


def unreadable(path: str | Path, err: BaseException) -> ValueError:
    """A one-line ``ValueError`` for a checkpoint that failed to load (truncated, garbled, or not a checkpoint):
    the path and the first sentence of the loader's error."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first = text.split(". ")[0].rstrip(".")
    return ValueError(f"{path} is not a readable checkpoint (truncated, or not a checkpoint at all): {first}")
