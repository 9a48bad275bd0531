"""``vqnat evaluate bleu``: score a translation file against its reference file (sacreBLEU and tokenized BLEU)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from vqnat_cli.errors import friendly_errors


@friendly_errors
def evaluate_bleu(
    hypotheses: Path = typer.Option(..., "--hyp", help="Translations, one detokenized sentence per line."),
    references: Path = typer.Option(..., "--ref", help="References, line-aligned: the official file as it is "
                                    "(not normalized or tokenized)."),
    lang: str = typer.Option("de", help="Target language of the Moses tokenizer (tokenized BLEU)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result here."),
) -> None:
    """sacreBLEU (with its signature) and the tokenized, compound-split BLEU of tensor2tensor's get_ende_bleu.sh,
    which WMT14 En-De papers report. The two are not comparable with each other.

    Example: vqnat evaluate bleu --hyp results/test_nat_soft.de --ref wmt14/test.de
    """
    for flag, path in (("--hyp", hypotheses), ("--ref", references)):
        if not path.is_file():
            raise ValueError(f"{flag}: file not found: {path}")
    from vqnat.pipeline.bleu import score_files

    text = json.dumps(score_files(hypotheses, references, lang), indent=2, ensure_ascii=False)
    typer.echo(text)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n", encoding="utf-8")
