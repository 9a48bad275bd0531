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
        if line.startswith("# ") and not line.startswith("# vqnat ="):
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
        ["evaluate"] * 4 + ["bench"]
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
                 "--prior-warmup": "50000", "--decoder-gold-mix-updates": "50000"}
        assert {option: value(nat, option) for option in paper} == paper
    for stage, argv in commands:  # 2 GPUs: world size 2, and 4 accumulation steps keep the 8-GPU batch
        distributed = ("--distributed-world-size" in argv, "--update-freq" in argv)
        if stage in TRAININGS:
            assert (value(argv, "--distributed-world-size"), value(argv, "--update-freq")) == ("2", "4")
        else:
            assert distributed == (False, False), argv
    assert value(by_stage["distill"], "--teacher") == str(tmp_path / "work" / "teacher" / "checkpoint_best.pt")
    assert {value(argv, "--beam") for stage, argv in commands if stage == "evaluate"} == {"4", "1"}


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
    """Raised by a stand-in for the library function a command calls: the CLI accepted the command."""


def test_every_printed_command_is_accepted_by_the_real_cli(corpus, tmp_path, monkeypatch):
    """The real Typer app parses each printed command up to the library call (stubbed: nothing trains); the
    fairseq-train arguments of the trainings, pass-through options included, go through fairseq's own parser."""
    import torch
    from fairseq import options

    import cli.prepare
    import cli.translation
    from cli.main import app

    work = tmp_path / "work"
    commands = dry_run(corpus, work, "--gpus", "2")
    for name in ("prepared", "distilled"):  # what `vqnat train` opens before calling fairseq
        (work / name / "data-bin").mkdir(parents=True)
        (work / name / "prepare.json").write_text(json.dumps({"src_lang": "en", "tgt_lang": "de"}))

    def reached(*args, **kwargs):
        raise Reached(args, kwargs)

    for target in ("run_fairseq", "distill_corpus", "evaluate_checkpoint", "run_bench"):
        monkeypatch.setattr(cli.translation, target, reached)
    monkeypatch.setattr(cli.prepare, "prepare_files", reached)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # --device cuda on a machine without one
    runner = CliRunner()
    for stage, argv in commands:
        result = runner.invoke(app, argv[1:])
        assert isinstance(result.exception, Reached), (stage, result.output, result.exception)
        if stage not in TRAININGS:
            continue
        tool, fairseq_args = result.exception.args[0]
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
    """A stand-in `vqnat`: logs its arguments; exits 3 when they start with $FAIL, else 0."""
    log, script = tmp_path / "calls.log", tmp_path / "vqnat"
    script.write_text(f"#!{sys.executable}\nimport os, sys\n"
                      f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
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
