"""BLEU and chrF with sacreBLEU (signatures included) of any translation checkpoint on a prepared split."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import sacrebleu

from vqnat.inference import DecodingOptions, Translator
from vqnat.pipeline.prepared import open_prepared


class Score(NamedTuple):
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    sentences: int

    def as_dict(self) -> dict[str, object]:
        return self._asdict()


def score(hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """Corpus sacreBLEU and chrF of detokenized hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return Score(round(b.score, 2), round(c.score, 2), str(bleu.get_signature()), str(chrf.get_signature()),
                 len(hypotheses))


def evaluate_checkpoint(checkpoint: str | Path, prepared: str | Path, split: str = "test", batch_size: int = 64,
                        options: DecodingOptions | None = None, limit: int | None = None,
                        translator: Translator | None = None, device: str = "cpu",
                        rescorer: str | Path | None = None, trust_checkpoint: bool = False) -> dict[str, object]:
    """Translate ``split`` of a prepared folder and score it; returns the score, timing and a few examples.
    ``checkpoint``: a bundle or checkpoint (see :meth:`Translator.load`); ``rescorer``: the teacher for noisy
    parallel decoding."""
    folder = open_prepared(prepared)
    sources, references = folder.read_raw(split, "src"), folder.read_raw(split, "tgt")
    if limit:
        sources, references = sources[:limit], references[:limit]
    translator = translator or Translator.load(checkpoint, data_dir=folder.data_bin, options=options, device=device,
                                               rescorer=rescorer, trust_checkpoint=trust_checkpoint)
    start = time.perf_counter()
    hypotheses = translator.translate(sources, batch_size=batch_size)
    seconds = time.perf_counter() - start
    result = score(hypotheses, references).as_dict()
    result.update(checkpoint=str(checkpoint), kind=translator.kind, split=split, seconds=round(seconds, 2),
                  examples=[{"source": s, "reference": r, "hypothesis": h}
                            for s, r, h in list(zip(sources, references, hypotheses, strict=True))[:3]])
    return result
