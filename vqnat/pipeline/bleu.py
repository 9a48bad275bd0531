"""BLEU of a translation file, two ways: sacreBLEU, and the tokenized BLEU that WMT14 En-De papers report.

- ``sacrebleu``: detokenized hypotheses against the references exactly as given (sacreBLEU's 13a tokenizer,
  signature included): the score other sacreBLEU users can compare with (Post 2018).
- ``tokenized``: what tensor2tensor's ``utils/get_ende_bleu.sh`` computes, and so what Roy et al. (2018), Vaswani
  et al. (2017) and most NAT papers report for En-De: Moses' ``replace-unicode-punctuation.perl``, then Moses'
  ``tokenizer.perl -l LANG`` (with its default HTML escaping), then every hyphen between two non-spaces split off as
  ``##AT##-##AT##`` (``s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g``), then ``multi-bleu.perl``: case-sensitive corpus
  BLEU over whitespace tokens, n = 1..4, no smoothing, brevity penalty ``exp(1 - r / c)`` when c < r. Moses' Perl
  scripts are replaced by sacremoses, their Python port. The script scores against a reference file that was
  tokenized beforehand (``newstest2014.tok.de``); here the untouched reference goes through the same steps as the
  hypotheses.

Scores of the two kinds are not comparable with each other: compound splitting alone adds tokens (and matches) to
both sides, and tokenized BLEU on the same output is usually higher.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import sacrebleu

from vqnat.pipeline.evaluate import score

_COMPOUND = re.compile(r"(\S)-(\S)")


def split_compounds(tokenized: str) -> str:
    """``rich-text`` -> ``rich ##AT##-##AT## text``: Perl's ``s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g``, whose
    matches do not overlap (``a-b-c`` -> ``a ##AT##-##AT## b-c``), like Python's ``re.sub``."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", tokenized)


@cache
def _moses(lang: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    tokenizer = MosesTokenizer(lang=lang)
    return MosesPunctNormalizer(lang=lang).replace_unicode_punct, \
        lambda text: tokenizer.tokenize(text, return_str=True, escape=True)


def t2t_tokenize(line: str, lang: str) -> str:
    """One line as ``get_ende_bleu.sh`` hands it to multi-bleu: unicode punctuation replaced, Moses-tokenized,
    compounds split."""
    replace_unicode, tokenize = _moses(lang)
    return split_compounds(tokenize(replace_unicode(line.strip())))


def multi_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """``multi-bleu.perl`` on whitespace-tokenized lines (one reference each), in percent, unrounded."""
    bleu = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="none", force=True)
    return bleu.corpus_score(list(hypotheses), [list(references)]).score


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str = "de") -> float:
    """tensor2tensor's ``get_ende_bleu.sh`` score of detokenized lines (see the module docstring), 2 decimals."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return round(multi_bleu([t2t_tokenize(h, lang) for h in hypotheses],
                            [t2t_tokenize(r, lang) for r in references]), 2)


def read_lines(path: Path) -> list[str]:
    """A text file's lines; only ``\\n`` ends a line."""
    with open(path, encoding="utf-8", newline="\n") as lines:
        return [line.rstrip("\n").removesuffix("\r") for line in lines]


def score_files(hypotheses: Path, references: Path, lang: str = "de") -> dict[str, object]:
    """Both scores of a hypothesis file against a reference file (line-aligned, detokenized text)."""
    hyps, refs = read_lines(hypotheses), read_lines(references)
    if len(hyps) != len(refs):
        raise ValueError(f"{hypotheses} has {len(hyps)} lines but {references} has {len(refs)}")
    sacre = score(hyps, refs)
    return {"sacrebleu": sacre.bleu, "sacrebleu_signature": sacre.bleu_signature, "chrf": sacre.chrf,
            "chrf_signature": sacre.chrf_signature,
            "tokenized_bleu": tokenized_bleu(hyps, refs, lang),
            "tokenized_bleu_method": f"get_ende_bleu.sh: replace-unicode-punctuation, tokenizer.perl -l {lang}, "
                                     "##AT##-##AT## compound splitting, multi-bleu.perl (via sacremoses)",
            "sentences": len(hyps), "hypotheses": str(hypotheses), "references": str(references)}
