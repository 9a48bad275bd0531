"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

if TYPE_CHECKING:
    from vqnat.data.bible import VersePair

TINY_BIBLE = dict(max_train=300, max_valid=50, max_test=50, vocab_size=800, seed=1)


class TinyBible(NamedTuple):
    """A tiny prepared Bible corpus (WEB -> Elberfelder): the folder and the verse pairs written into it."""

    root: Path  # prepared folder: raw/, spm.model, spm/, data-bin/, prepare.json
    data_bin: Path  # fairseq data: dict.{en,de}.txt, {train,valid,test}.en-de.{en,de}.{bin,idx}
    spm_model: Path
    train: list[VersePair]  # 300 verses of the training books
    valid: list[VersePair]  # 50 verses of Mark
    test: list[VersePair]  # 50 verses of John


@pytest.fixture(scope="session")
def tiny_bible_bin(tmp_path_factory: pytest.TempPathFactory) -> TinyBible:
    """Prepare 300/50/50 real verse pairs with an 800-piece joint sentencepiece model, once per session (~7 s)."""
    from vqnat.data.bible import load_bible_split
    from vqnat.data.prepare import prepare_bible

    sizes = {k: TINY_BIBLE[k] for k in ("max_train", "max_valid", "max_test", "seed")}
    prepared = prepare_bible(tmp_path_factory.mktemp("tiny_bible"), workers=1, **TINY_BIBLE)
    split = load_bible_split(**sizes)
    return TinyBible(prepared.root, prepared.data_bin, prepared.spm_model, split.train, split.valid, split.test)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory):
    """A tiny latent transformer and a tiny autoregressive teacher trained by fairseq on 120 real verse pairs of
    Genesis (whitespace words), once per session (20-50 s). See tests/fixtures_fairseq.py."""
    from tests.fixtures_fairseq import train_tiny_checkpoints

    return train_tiny_checkpoints(tmp_path_factory.mktemp("tiny_checkpoints"))
