"""Read a folder written by ``vqnat prepare``: its manifest, raw splits and binarized data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from vqnat.data.tokenizer import MANIFEST


class PreparedFolder(NamedTuple):
    root: Path
    data_bin: Path
    src_lang: str
    tgt_lang: str
    manifest: dict

    def raw(self, split: str, side: str) -> Path:
        """Path of the raw (untokenized) text of ``split`` on ``side`` ("src" or "tgt")."""
        return self.root / "raw" / f"{split}.{self.src_lang if side == 'src' else self.tgt_lang}"

    def read_raw(self, split: str, side: str) -> list[str]:
        path = self.raw(split, side)
        if not path.is_file():
            raise ValueError(f"{path} is missing: the prepared folder has no {split!r} split")
        return path.read_text(encoding="utf-8").splitlines()


def open_prepared(root: str | Path) -> PreparedFolder:
    """Open a prepared folder, or raise ValueError saying how to make one."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"{root} is not a prepared folder (no {MANIFEST}): run `vqnat prepare bible --out {root}`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    data_bin = root / manifest.get("data_bin", "data-bin")
    if not data_bin.is_dir():
        raise ValueError(f"{data_bin} is missing: rerun `vqnat prepare` on {root}")
    return PreparedFolder(root, data_bin, manifest["src_lang"], manifest["tgt_lang"], manifest)
