"""recipes/wmt14_en_de/run.py: the commands it prints, that the real CLI (and fairseq's parser behind it) accepts
every one of them, its errors, and how it runs stages (with a stand-in `vqnat`). Nothing here trains."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

RUN = Path(__file__).resolve().parents[2] / "recipes" / "wmt14_en_de" / "run.py"
FILES = [f"{split}.{lang}" for split in ("train", "valid", "test") for lang in ("en", "de")]
TRAININGS = ("teacher", "nat-soft", "nat-hard")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "wmt14"
    folder.mkdir()
    for name in FILES:
        (folder / name).write_text("Hello world .\nGood morning .\n", encoding="utf-8")
    return folder


def run_recipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True, timeout=60)


def dry_run(corpus: Path, work: Path, *args: str) -> list[tuple[str, list[str]]]:
    """(stage, argv) of every command the dry run prints, in order."""
    result = run_recipe("--corpus", str(corpus), "--work", str(work), "--dry-run", *args)
    assert result.returncode == 0, result.stderr
    commands, stage = [], None
    for line in result.stdout.splitlines():
        if line.startswith("# ") and not line.startswith(("# vqnat =", "# environment:")):
            stage = line[2:].split(";")[0].split(":")[0]
        elif line and not line.startswith("#"):
            commands.append((stage, shlex.split(line)))
    return commands


def value(argv: list[str], option: str) -> str:
    assert argv.count(option) == 1, (option, argv)
    return argv[argv.index(option) + 1]


def test_dry_run_prints_every_stage_in_order_with_the_paper_settings(corpus, tmp_path):
    commands = dry_run(corpus, tmp_path / "work", "--gpus", "2")
    assert [stage for stage, _ in commands] == ["prepare", "teacher", "distill", "nat-soft", "nat-hard"] + \
        ["evaluate"] * 8 + ["bench"]
    assert all(argv[0] == "vqnat" for _, argv in commands)
    by_stage = {stage: argv for stage, argv in commands}
    assert by_stage["prepare"][1:3] == ["prepare", "files"]
    assert value(by_stage["prepare"], "--test-src-file") == str(corpus / "test.en")
    teacher = by_stage["teacher"]
    assert teacher[1:3] == ["train", "teacher"] and value(teacher, "--size") == "big" and "--fp16" in teacher
    assert value(teacher, "--dropout") == "0.3"
    for stage in ("nat-soft", "nat-hard"):
        nat = by_stage[stage]
        assert nat[1:3] == ["train", "nat"] and value(nat, "--bottleneck") == stage[4:]
        assert value(nat, "--data") == str(tmp_path / "work" / "distilled")
        paper = {"--arch": "vqnat_lt_base", "--codebook-size": "4096", "--num-samples": "10", "--compress-steps": "3",
                 "--beta": "0.25", "--codebook-decay": "0.999", "--codebook-eps": "1e-5", "--length-ratio": "2.0",
                 "--prior-warmup": "50000", "--decoder-gold-mix-updates": "50000", "--prior-layers": "6",
                 "--lr": "0.001398", "--warmup": "4000", "--adam-betas": "(0.9, 0.997)", "--adam-eps": "1e-9"}
        assert {option: value(nat, option) for option in paper} == paper
        assert "--amp" in nat and value(nat, "--keep-interval-updates") == "5"
    for stage, argv in commands:  # 2 GPUs: world size 2, and 4 accumulation steps keep the 8-GPU batch
        distributed = ("--distributed-world-size" in argv, "--update-freq" in argv)
        if stage in TRAININGS:
            assert (value(argv, "--distributed-world-size"), value(argv, "--update-freq")) == ("2", "4")
        else:
            assert distributed == (False, False), argv
    assert value(by_stage["distill"], "--teacher") == str(tmp_path / "work" / "teacher" / "checkpoint_best.pt")
    evaluate = [argv for stage, argv in commands if stage == "evaluate"]
    assert [argv[1] for argv in evaluate] == ["translate", "evaluate"] * 4
    assert [value(argv, "--beam") for argv in evaluate[:4:2]] == ["4", "1"]  # the teacher's
    assert not any("--beam" in argv for argv in evaluate[4::2])  # the NATs decode in one pass
    for translate, bleu in zip(evaluate[::2], evaluate[1::2], strict=True):
        assert value(translate, "--input") == str(tmp_path / "work" / "prepared" / "raw" / "test.en")
        assert value(bleu, "--hyp") == value(translate, "--output")
        assert value(bleu, "--ref") == str(corpus / "test.de")  # the official references, untouched


def test_gpu_runs_get_tf32_and_mixed_precision_unless_switched_off(corpus, tmp_path):
    result = run_recipe("--corpus", str(corpus), "--work", str(tmp_path), "--dry-run", "--stages", "nat-soft")
    assert "# environment: TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1" in result.stdout and " --amp " in result.stdout
    result = run_recipe("--corpus", str(corpus), "--work", str(tmp_path), "--dry-run", "--stages", "nat-soft",
                        "--no-tf32", "--no-amp")
    assert "TORCH_ALLOW_TF32" not in result.stdout and "--amp" not in result.stdout
    result = run_recipe("--corpus", str(corpus), "--work", str(tmp_path), "--dry-run", "--stages", "nat-soft",
                        "--device", "cpu")
    assert "TORCH_ALLOW_TF32" not in result.stdout and "--amp" not in result.stdout


@pytest.mark.parametrize(("options", "expected"), [
    (["--gpus", "8"], {"--distributed-world-size": "8", "--update-freq": "1"}),
    (["--gpus", "1"], {"--distributed-world-size": "1", "--update-freq": "8"}),
    (["--gpus", "4", "--nodes", "2", "--node-rank", "1", "--master", "node0:29500", "--stages", "teacher"],
     {"--distributed-world-size": "8", "--update-freq": "1", "--distributed-init-method": "tcp://node0:29500",
      "--distributed-rank": "4"}),
])
def test_gpus_set_the_distributed_options(corpus, tmp_path, options, expected):
    for stage, argv in dry_run(corpus, tmp_path / "work", *options):
        if stage in TRAININGS:
            assert {option: value(argv, option) for option in expected} == expected
            assert ("--distributed-init-method" in argv) == ("--nodes" in options)


class Reached(Exception):
    """Raised by a stand-in for the library function a command calls, after recording the call: the CLI accepted
    the command (its error handling then turns the exception into an exit code)."""


def test_every_printed_command_is_accepted_by_the_real_cli(corpus, tmp_path, monkeypatch):
    """The real Typer app parses each printed command up to the library call (stubbed: nothing trains); the
    fairseq-train arguments of the trainings, pass-through options included, go through fairseq's own parser."""
    import torch
    import vqnat_cli.prepare
    import vqnat_cli.translation
    from fairseq import options
    from vqnat_cli.main import app

    work = tmp_path / "work"
    commands = dry_run(corpus, work, "--gpus", "2")
    for name in ("prepared", "distilled"):  # what `vqnat train` opens before calling fairseq
        (work / name / "data-bin").mkdir(parents=True)
        (work / name / "prepare.json").write_text(json.dumps({"src_lang": "en", "tgt_lang": "de"}))
    (work / "prepared" / "raw").mkdir()
    (work / "prepared" / "raw" / "test.en").write_text("Hello world .\n")  # what `vqnat translate` reads
    (work / "results").mkdir()
    for _, argv in commands:
        if argv[1:3] == ["evaluate", "bleu"]:  # the hypotheses `vqnat translate` would have written
            Path(value(argv, "--hyp")).write_text("Hallo Welt .\n")

    calls: list[tuple] = []

    def reached(*args, **kwargs):
        calls.append(args)
        raise Reached(args, kwargs)

    import importlib

    # the library functions the commands call, where they are defined (commands may import them late) and under
    # the names a CLI module imported them
    for module, name, *aliases in (("vqnat.pipeline.fairseq_run", "run_fairseq"),
                                   ("vqnat.pipeline.distill", "distill", "distill_corpus"),
                                   ("vqnat.pipeline.evaluate", "evaluate_checkpoint"),
                                   ("vqnat.pipeline.bench", "run_bench"), ("vqnat.pipeline.bleu", "score_files"),
                                   ("vqnat.data.prepare", "prepare_files")):
        monkeypatch.setattr(importlib.import_module(module), name, reached)
        for cli_module in (vqnat_cli.translation, vqnat_cli.prepare):
            for alias in (name, *aliases):
                if hasattr(cli_module, alias):
                    monkeypatch.setattr(cli_module, alias, reached)
    import vqnat.inference

    monkeypatch.setattr(vqnat.inference.Translator, "load", reached)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # --device cuda on a machine without one
    runner = CliRunner()
    for stage, argv in commands:
        before = len(calls)
        result = runner.invoke(app, argv[1:])
        assert len(calls) == before + 1, (stage, result.output, result.exception)
        if stage not in TRAININGS:
            continue
        tool, fairseq_args = calls[-1]
        assert tool == "train"
        parsed = options.parse_args_and_arch(options.get_training_parser(), list(fairseq_args))
        given = {a[2:].replace("-", "_") for a in fairseq_args if a.startswith("--")}
        assert not {name for name in given if not hasattr(parsed, name)}, "abbreviated or unknown options"
        assert parsed.distributed_world_size == 2 and parsed.update_freq == [4] and parsed.max_epoch == 0
        if stage == "teacher":
            assert parsed.fp16 and parsed.dropout == 0.3 and parsed.encoder_embed_dim == 1024
            assert parsed.max_update == 300_000 and parsed.max_tokens == 3584
        else:
            assert parsed.arch == "vqnat_lt_base" and parsed.bottleneck == stage[4:]
            assert (parsed.codebook_size, parsed.num_samples, parsed.compress_steps) == (4096, 10, 3)
            assert (parsed.beta, parsed.codebook_decay, parsed.codebook_eps) == (0.25, 0.999, 1e-5)
            assert (parsed.prior_warmup_updates, parsed.decoder_gold_mix_updates) == (50_000, 50_000)
            assert (parsed.length_ratio, parsed.prior_layers, parsed.label_smoothing) == (2.0, 6, 0.0)
            assert parsed.lr == [0.001398] and parsed.lr_scheduler == "inverse_sqrt" and parsed.warmup_updates == 4000
            assert (parsed.adam_betas, parsed.adam_eps) == ("(0.9, 0.997)", 1e-9)  # the last occurrence wins
            assert parsed.amp and not parsed.fp16 and parsed.best_checkpoint_metric == "full_loss"
        assert parsed.keep_interval_updates == 5 and parsed.save_interval_updates == 2500


def test_a_missing_input_file_is_a_one_line_error(corpus, tmp_path):
    (corpus / "test.de").unlink()
    result = run_recipe("--corpus", str(corpus), "--work", str(tmp_path / "work"), "--dry-run")
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and str(corpus / "test.de") in result.stderr
    result = run_recipe("--work", str(tmp_path / "work"), "--dry-run")  # no --corpus at all
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "--corpus" in result.stderr


def test_a_stage_whose_input_no_stage_makes_is_a_one_line_error(tmp_path):
    result = run_recipe("--work", str(tmp_path / "work"), "--stages", "distill", "--vqnat", "/bin/false")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "from stage" in result.stderr and "prepare.json" in result.stderr


@pytest.fixture
def fake_vqnat(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in `vqnat`: logs its arguments (and, in calls.log.env, $TORCH_ALLOW_TF32_CUBLAS_OVERRIDE); exits 3
    when they start with $FAIL, else 0."""
    log, script = tmp_path / "calls.log", tmp_path / "vqnat"
    script.write_text(f"#!{sys.executable}\nimport os, sys\n"
                      f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                      f"open({str(log) + '.env'!r}, 'a').write("
                      "os.environ.get('TORCH_ALLOW_TF32_CUBLAS_OVERRIDE', '-') + '\\n')\n"
                      "fail = os.environ.get('FAIL')\n"
                      "sys.exit(3 if fail and ' '.join(sys.argv[1:]).startswith(fail) else 0)\n")
    script.chmod(0o755)
    return script, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_runs_in_order_and_stops_at_the_first_failing_stage(corpus, tmp_path, fake_vqnat, monkeypatch):
    script, log = fake_vqnat
    work = tmp_path / "work"
    monkeypatch.setenv("FAIL", "train teacher")
    result = run_recipe("--corpus", str(corpus), "--work", str(work), "--vqnat", str(script),
                        "--stages", "prepare,teacher,distill,nat-soft")
    assert result.returncode == 1
    assert [c.split()[:2] for c in calls(log)] == [["prepare", "files"], ["train", "teacher"]]
    [line] = result.stderr.splitlines()
    assert line.startswith("run.py: stage teacher failed (exit 3)") and line.endswith(str(work / "teacher/train.log"))
    assert not (work / "teacher" / "recipe_done.json").exists()
    assert [json.loads(line)["exit"] for line in (work / "timeline.jsonl").read_text().splitlines()] == [0, 3]


def test_skips_stages_whose_output_exists_unless_forced(corpus, tmp_path, fake_vqnat):
    script, log = fake_vqnat
    work = tmp_path / "work"
    common = ["--corpus", str(corpus), "--work", str(work), "--vqnat", str(script), "--stages", "prepare,teacher"]
    (work / "prepared").mkdir(parents=True)
    (work / "prepared" / "prepare.json").write_text("{}")
    result = run_recipe(*common)
    assert result.returncode == 0, result.stderr
    assert [c.split()[:2] for c in calls(log)] == [["train", "teacher"]]  # prepare skipped
    assert "prepare: skipped" in result.stdout
    assert json.loads((work / "teacher" / "recipe_done.json").read_text())["command"][:3] == ["vqnat", "train",
                                                                                              "teacher"]
    assert run_recipe(*common).returncode == 0
    assert len(calls(log)) == 1  # the finished training is skipped too
    assert run_recipe(*common, "--force").returncode == 0
    assert [c.split()[:2] for c in calls(log)[1:]] == [["prepare", "files"], ["train", "teacher"]]
    assert calls(log)[1].endswith("--force")


def test_commands_on_gpus_run_with_tf32(corpus, tmp_path, fake_vqnat):
    script, log = fake_vqnat
    common = ["--corpus", str(corpus), "--vqnat", str(script), "--stages", "prepare"]
    assert run_recipe(*common, "--work", str(tmp_path / "a")).returncode == 0
    assert run_recipe(*common, "--work", str(tmp_path / "b"), "--no-tf32").returncode == 0
    assert run_recipe(*common, "--work", str(tmp_path / "c"), "--device", "cpu").returncode == 0
    assert Path(f"{log}.env").read_text().split() == ["1", "-", "-"]


def test_the_whole_recipe_runs_end_to_end_on_tiny_bible_data(tmp_path):
    """Every stage through the real CLI on a CPU: 60 verse pairs, tiny models (a codebook of 64, a 1-layer prior),
    6 updates per training, greedy distillation. About three minutes on 2 busy cores; it checks that the stages
    fit together, not what they reach."""
    from vqnat.data.bible import load_bible_split

    split = load_bible_split(max_train=60, max_valid=10, max_test=10, seed=1)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, pairs in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        (corpus / f"{name}.en").write_text("".join(p.src + "\n" for p in pairs), encoding="utf-8")
        (corpus / f"{name}.de").write_text("".join(p.tgt + "\n" for p in pairs), encoding="utf-8")
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, str(RUN), "--corpus", str(corpus), "--work", str(work), "--device", "cpu",
         "--teacher-size", "tiny", "--nat-arch", "vqnat_lt_tiny", "--codebook-size", "64", "--prior-layers", "1",
         "--teacher-updates", "6", "--nat-updates", "6", "--startup-updates", "3", "--warmup", "2",
         "--save-interval-updates", "3", "--vocab-size", "300", "--distill-beam", "1", "--prepare-workers", "1",
         "--bench-limit", "3", "--bench-threads", "1"],
        capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    timeline = [json.loads(line) for line in (work / "timeline.jsonl").read_text().splitlines()]
    assert [entry["exit"] for entry in timeline] == [0] * 14  # 5 stages, 4 x (translate, bleu), bench
    for system in ("teacher_beam4", "teacher_greedy", "nat_soft", "nat_hard"):
        report = json.loads((work / "results" / f"test_{system}.json").read_text(encoding="utf-8"))
        assert report["sentences"] == 10 and report["references"] == str(corpus / "test.de")
        assert isinstance(report["tokenized_bleu"], float) and "tok:13a" in report["sacrebleu_signature"]
    assert (work / "results" / "bench.json").is_file()
    log = (work / "nat_soft" / "train.log").read_text(encoding="utf-8")  # fairseq logs its whole config
    assert "'keep_interval_updates': 5" in log and "'best_checkpoint_metric': 'full_loss'" in log
    assert "best_full_loss" in log
