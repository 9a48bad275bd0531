"""The whole translation pipeline through the CLI on a tiny real corpus:
teacher -> distill -> nat -> translate -> evaluate -> bench (tiny models, a few updates each)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from vqnat_cli.main import app

runner = CliRunner()
FEW = ["--max-update", "4", "--max-tokens", "2048", "--warmup", "10"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def pipeline(tiny_bible_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    data = str(tiny_bible_bin.root)
    invoke("train", "teacher", "--data", data, "--save-dir", str(work / "teacher"), "--size", "tiny", *FEW)
    teacher = work / "teacher" / "checkpoint_last.pt"
    invoke("distill", "--teacher", str(teacher), "--data", data, "--out", str(work / "distilled"), "--beam", "2")
    invoke("train", "nat", "--data", str(work / "distilled"), "--save-dir", str(work / "nat"),
           "--arch", "vqnat_lt_tiny", "--num-samples", "3", *FEW)
    return work, teacher, work / "nat" / "checkpoint_last.pt"


def test_distill_replaces_train_targets_only(pipeline, tiny_bible_bin):
    work, _, _ = pipeline
    report = json.loads((work / "distilled" / "distill.json").read_text())
    assert report["train_sentences"] == len(tiny_bible_bin.train)
    assert report["teacher_valid"]["bleu_signature"].startswith("nrefs:1")
    assert report["teacher_valid"]["sentences"] == len(tiny_bible_bin.valid)
    distilled = (work / "distilled" / "spm" / "train.de").read_text().splitlines()
    assert len(distilled) == len(tiny_bible_bin.train)
    original_test = (tiny_bible_bin.root / "raw" / "test.de").read_text()
    assert (work / "distilled" / "raw" / "test.de").read_text() == original_test
    for name in ("train", "valid", "test"):
        assert (work / "distilled" / "data-bin" / f"{name}.en-de.de.bin").exists()


def test_translate_reads_stdin_and_writes_lines(pipeline, tiny_bible_bin):
    _, _, nat = pipeline
    sources = [p.src for p in tiny_bible_bin.test[:5]]
    result = runner.invoke(app, ["translate", "--model", str(nat)], input="\n".join(sources) + "\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 5


def test_translate_with_noisy_parallel_decoding(pipeline, tiny_bible_bin):
    _, teacher, nat = pipeline
    sources = [p.src for p in tiny_bible_bin.test[:4]]
    result = runner.invoke(app, ["translate", "--model", str(nat), "--latent-beam", "3", "--rescore-with",
                                 str(teacher)], input="\n".join(sources) + "\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4
    bad = runner.invoke(app, ["translate", "--model", str(teacher), "--latent-beam", "3"], input="a\n")
    assert bad.exit_code == 1 and "latent transformer only" in bad.output and "Traceback" not in bad.output


def test_evaluate_reports_sacrebleu_signature(pipeline, tmp_path):
    work, teacher, _ = pipeline
    out = tmp_path / "eval.json"
    invoke("evaluate", "translation", "--model", str(teacher), "--data", str(work / "distilled"), "--json", str(out))
    result = json.loads(out.read_text())
    assert result["sentences"] == 50 and result["kind"] == "autoregressive"
    assert result["bleu_signature"].startswith("nrefs:1") and 0 <= result["bleu"] <= 100


def test_evaluate_nat_with_a_length_override(pipeline, tmp_path):
    work, _, nat = pipeline
    out = tmp_path / "eval.json"
    # `vqnat train nat` trains a length predictor by default: its margin can change, a ratio cannot apply.
    invoke("evaluate", "translation", "--model", str(nat), "--data", str(work / "distilled"), "--length-offset",
           "6", "--collapse-repeats", "--json", str(out))
    assert json.loads(out.read_text())["sentences"] == 50
    result = runner.invoke(app, ["evaluate", "translation", "--model", str(nat), "--data", str(work / "distilled"),
                                 "--length-ratio", "1.0"])
    assert result.exit_code == 1 and "predicts lengths" in result.output and "Traceback" not in result.output


def test_bench_writes_table_json_and_plot(pipeline, tmp_path):
    work, teacher, nat = pipeline
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    output = invoke("bench", "--nat", str(nat), "--teacher", str(teacher), "--data", str(work / "distilled"),
                    "--limit", "8", "--large-batch", "4", "--threads", "1", "--npd", "2", "--out", str(out),
                    "--plot", str(plot), "--extra-nat", f"nat again={nat}")
    report = json.loads(out.read_text())
    assert set(report["systems"]) == {"nat", "nat + NPD 2", "nat again", "teacher greedy", "teacher beam 4"}
    assert report["systems"]["nat + NPD 2"]["rescorer"] == str(teacher)
    greedy = report["systems"]["teacher greedy"]
    assert greedy["speedup_batch1"] == 1.0
    for row in report["systems"].values():
        assert row["batch1_median_ms"] > 0 and row["large_batch_sentences_per_s"] > 0
    assert report["machine"]["torch"]
    assert plot.stat().st_size > 1000 and "teacher greedy" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "teacher", "--data", "/nonexistent", "--save-dir", "/tmp/x"], "not a prepared folder"),
        (["translate", "--model", "/nonexistent.pt"], "checkpoint not found"),
        (["train", "nat", "--data", "{data}", "--save-dir", "/tmp/x", "--arch", "nope"], "unknown latent"),
        (["bench", "--nat", "/no.pt", "--teacher", "/no.pt", "--data", "/nonexistent"], "not a prepared folder"),
        (["bench", "--nat", "/no.pt", "--teacher", "/no.pt", "--data", "{data}", "--extra-nat", "x"],
         "NAME=CHECKPOINT"),
        (["bench", "--nat", "/no.pt", "--teacher", "/no.pt", "--data", "{data}", "--device", "tpu"],
         "--device must be cpu or cuda"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tiny_bible_bin, args, message):
    args = [a.replace("{data}", str(tiny_bible_bin.root)) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_wrong_checkpoint_kind_is_rejected(pipeline, tmp_path):
    _, _, nat = pipeline
    import torch

    from vqnat.checkpoint import read_checkpoint_as_saved

    fake = tmp_path / "image.pt"
    state = read_checkpoint_as_saved(nat)  # from the pipeline's own training folder
    state["cfg"]["task"]["_name"] = "vqnat_image"
    torch.save(state, fake)
    result = runner.invoke(app, ["translate", "--model", str(fake), "--trust-checkpoint"], input="hello\n")
    assert result.exit_code == 1 and "not a translation model" in result.output
