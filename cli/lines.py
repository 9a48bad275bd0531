"""Line-exact text for ``vqnat translate``: reading sentences, and writing translations as they are done.

One input line is one sentence and gives one output line, in order: lines end at ``\\n`` only (a ``\\r`` before
it is dropped), so a form feed, a vertical tab, a lone ``\\r``, U+0085 or U+2028 inside a line stays inside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path


def split_lines(data: bytes, source: str) -> list[str]:
    """The ``\\n``-separated lines of UTF-8 ``data`` (a last line without ``\\n`` counts; empty data has none).

    ``\\r\\n`` endings and a leading byte-order mark are accepted. Invalid UTF-8 raises ``ValueError`` naming
    ``source`` and the line number.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":  # the newline that ends the last line (or empty data) starts no new line
        raw_lines.pop()
    lines = []
    for number, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{source}, line {number}: not valid UTF-8 (byte {err.start + 1} of the line: "
                             f"{raw[err.start:err.start + 1]!r}); convert the file to UTF-8") from None
        lines.append(line[:-1] if line.endswith("\r") else line)
    return lines


def one_line(text: str) -> str:
    """``text`` with any ``\\r``/``\\n`` turned into spaces, so that one translation stays one output line."""
    return text.replace("\r", " ").replace("\n", " ")


def run_key(data: bytes, **settings: object) -> dict[str, object]:
    """What a partial output belongs to: the input's digest and the settings that change its translations."""
    return {"input_sha256": hashlib.sha256(data).hexdigest(), **{k: str(v) for k, v in settings.items()}}


class ResumableOutput:
    """Translations written to ``<path>.partial`` as they are done, renamed to ``path`` when all are there.

    ``<path>.partial.json`` records the :func:`run_key` of the run; a rerun with the same key continues after
    the last complete line, a rerun with another one starts over (and :meth:`open` says which). Opening checks
    that ``path`` can be written before any work starts.
    """

    def __init__(self, path: Path, key: dict[str, object]) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.record = path.with_name(path.name + ".partial.json")
        self.key = key
        self._file = None

    def check_writable(self) -> None:
        """Raise ``ValueError`` (one line) when ``path`` is a folder or its folder does not exist."""
        if self.path.is_dir():
            raise ValueError(f"--output {self.path} is a folder: name a file")
        if not self.path.parent.is_dir():
            raise ValueError(f"the folder of --output {self.path} does not exist: create it first")

    def open(self) -> tuple[int, str | None]:
        """Open for appending: ``(lines already done, a notice for the user or None)``."""
        self.check_writable()
        done, notice = 0, None
        if self.partial.is_file():
            same = self.record.is_file() and _read_json(self.record) == self.key
            if same:
                done = _trim_to_complete_lines(self.partial)
                notice = f"resuming: {done} lines are already in {self.partial}"
            else:
                notice = f"{self.partial} is from another input, model or setting: starting over"
        if not done:
            self.partial.write_bytes(b"")
            self.record.write_text(json.dumps(self.key, indent=1) + "\n", encoding="utf-8")
        self._file = self.partial.open("a", encoding="utf-8", newline="\n")
        return done, notice

    def write(self, lines: Iterable[str]) -> None:
        """Append translations (one line each) and push them to the disk."""
        assert self._file is not None, "open() first"
        self._file.write("".join(one_line(line) + "\n" for line in lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self) -> None:
        """All lines written: the partial file becomes ``path``."""
        self.close()
        os.replace(self.partial, self.path)
        self.record.unlink(missing_ok=True)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _trim_to_complete_lines(path: Path) -> int:
    """Cut a line that a kill left half-written; the number of complete lines."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with path.open("r+b") as f:
            f.truncate(end)
    return data.count(b"\n", 0, end)
