"""The joint sentencepiece model of a prepared corpus: text <-> the space-separated pieces fairseq sees."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

logger = logging.getLogger(__name__)

SPM_MODEL = "spm.model"  # name of the model inside a prepared folder
MANIFEST = "prepare.json"


class SentencePieceTokenizer:
    """Encode text into sentencepiece pieces (``"▁In ▁the ▁begin ning"``) and decode pieces back into text.

    ``translate`` uses :meth:`encode` on its input and :meth:`decode` on fairseq's hypotheses.
    """

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"sentencepiece model not found: {path} (run `vqnat prepare` first)")
        self.model_path = path
        self.processor = spm.SentencePieceProcessor(model_file=str(path))

    @classmethod
    def from_prepared(cls, root: str | Path) -> SentencePieceTokenizer:
        """The tokenizer of a folder written by ``vqnat prepare`` (its ``prepare.json`` names the model)."""
        root = Path(root)
        manifest = root / MANIFEST
        model = SPM_MODEL
        if manifest.is_file():
            model = json.loads(manifest.read_text(encoding="utf-8"))["sentencepiece"]["model"]
        elif not root.is_dir():
            raise ValueError(f"prepared data folder not found: {root} (run `vqnat prepare` first)")
        return cls(root / model)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> str:
        """One line of text -> its pieces joined by single spaces."""
        return " ".join(self.processor.encode(text.strip(), out_type=str))

    def decode(self, pieces: str) -> str:
        """Space-separated pieces (e.g. a fairseq hypothesis) -> detokenized text."""
        return self.processor.decode_pieces(pieces.split())

    def encode_lines(self, lines: Iterable[str]) -> list[str]:
        lines = [line.strip() for line in lines]
        return [" ".join(pieces) for pieces in self.processor.encode(lines, out_type=str)]

    def decode_lines(self, lines: Iterable[str]) -> list[str]:
        return [self.decode(line) for line in lines]
