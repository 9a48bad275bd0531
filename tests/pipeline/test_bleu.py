"""vqnat.pipeline.bleu and `vqnat evaluate bleu`: tensor2tensor's tokenized, compound-split BLEU on tiny inputs,
against values computed by hand, and sacreBLEU on the references as given."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app

from vqnat.pipeline.bleu import multi_bleu, split_compounds, t2t_tokenize, tokenized_bleu

HYP = "Der Hund-Halter schläft heute sehr lange."
REF = "Der Hund-Besitzer schläft heute sehr lange."


def test_compounds_split_as_perl_does():
    assert split_compounds("rich-text format") == "rich ##AT##-##AT## text format"
    assert split_compounds("a-b-c - x- -y") == "a ##AT##-##AT## b-c - x- -y"  # matches never overlap


def test_tokenization_follows_get_ende_bleu():
    assert t2t_tokenize(HYP, "de") == "Der Hund ##AT##-##AT## Halter schläft heute sehr lange ."
    # replace-unicode-punctuation turns “ into " and … into ... (it leaves „ alone); the tokenizer escapes "
    assert t2t_tokenize("„Ja“, sagte er…", "de") == "„ Ja &quot; , sagte er ..."


def test_tokenized_bleu_matches_a_hand_computed_value():
    # 9 tokens each side: Der Hund ##AT##-##AT## {Halter|Besitzer} schläft heute sehr lange .
    # matching 1..4-grams: 8/9, 6/8, 4/7, 2/6; equal lengths, so no brevity penalty
    expected = 100 * (8 / 9 * 6 / 8 * 4 / 7 * 2 / 6) ** 0.25
    assert tokenized_bleu([HYP], [REF]) == round(expected, 2) == 59.69
    # without the compound split (7 tokens: 6/7, 4/6, 3/5, 2/4) the score differs: the split is applied
    unsplit = 100 * (6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25
    assert round(multi_bleu([HYP.replace(".", " .")], [REF.replace(".", " .")]), 2) == round(unsplit, 2) == 64.35


def test_multi_bleu_brevity_penalty_and_zero_precision():
    # hypothesis 4 tokens, reference 5: every n-gram of the hypothesis matches, BP = exp(1 - 5/4)
    assert multi_bleu(["a b c d"], ["a b c d e"]) == pytest.approx(100 * math.exp(1 - 5 / 4))
    assert multi_bleu(["a b c x"], ["a b c d"]) == 0.0  # no matching 4-gram, no smoothing


def test_cli_scores_files_against_untouched_references(tmp_path):
    hyp, ref = tmp_path / "hyp.de", tmp_path / "ref.de"
    hyp.write_text(HYP + "\n", encoding="utf-8")
    ref.write_text(REF + "\n", encoding="utf-8")
    out = tmp_path / "bleu.json"
    result = CliRunner().invoke(app, ["evaluate", "bleu", "--hyp", str(hyp), "--ref", str(ref), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["tokenized_bleu"] == 59.69 and report["sentences"] == 1
    assert report["sacrebleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    # sacreBLEU's 13a tokenizer keeps "Hund-Halter" whole: 7 tokens, as in the unsplit count above
    assert report["sacrebleu"] == 64.35
    missing = CliRunner().invoke(app, ["evaluate", "bleu", "--hyp", str(tmp_path / "nope"), "--ref", str(ref)])
    assert missing.exit_code == 1 and "file not found" in missing.output
