"""Running fairseq tools: progress lines, bounded output, and reading generate's results file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vqnat.pipeline import fairseq_run
from vqnat.pipeline.distill import read_hypotheses


@pytest.mark.parametrize(("line", "expected"), [
    ("2026-11-26 06:10:01 | INFO | fairseq.logging.progress_bar | :     40 / 716 wps=1207\n", (40, 716)),
    ("INFO:fairseq.logging.progress_bar::      6 / 15 wps=1207\n", (6, 15)),
    ("2026-11-26 06:12:02 | INFO | train_inner | epoch 001:     50 / 268 loss=18.868, recon_loss=6.1\n", (50, 268)),
    ("2026-11-26 06:12:02 | INFO | fairseq_cli.generate | Translated 672 sentences (19,246 tokens)\n", None),
    ("H-3\t-0.5\t▁ratio 1 / 2 ▁of\n", None),  # a hypothesis that happens to contain "1 / 2"
])
def test_progress_position(line, expected):
    assert fairseq_run.progress_position(line) == expected


def test_run_fairseq_can_drop_its_output(monkeypatch, tmp_path):
    """``keep_output=False`` returns only the tail; the log file still gets every line; a bar follows progress."""
    script = ("import sys\n"
              "for i in range(1, 101):\n"
              "    print(f'INFO | fairseq.logging.progress_bar | : {i:6d} / 100 wps=1')\n")
    monkeypatch.setattr(fairseq_run, "fairseq_command", lambda tool, args: ["python", "-c", script])
    log = tmp_path / "run.log"
    tail = fairseq_run.run_fairseq("generate", [], log_path=log, keep_output=False, progress="test")
    assert tail.count("\n") == fairseq_run.TAIL_LINES and "100 / 100" in tail and "  1 / 100" not in tail
    assert sum(line.startswith("INFO") for line in log.read_text().splitlines()) == 100
    full = fairseq_run.run_fairseq("generate", [])
    assert full.count("\n") == 100


def test_run_fairseq_failure_names_the_tool(monkeypatch):
    monkeypatch.setattr(fairseq_run, "fairseq_command",
                        lambda tool, args: ["python", "-c", "print('boom'); raise SystemExit(3)"])
    with pytest.raises(fairseq_run.FairseqError, match=r"^fairseq-generate failed \(exit 3\): boom$"):
        fairseq_run.run_fairseq("generate", [], keep_output=False, progress="x")


def _scripted(monkeypatch, scripts: dict[str, str]) -> None:
    """fairseq_command runs ``scripts[tool]`` (the tool name picks the script) instead of fairseq."""
    monkeypatch.setattr(fairseq_run, "fairseq_command", lambda tool, args: ["python", "-c", scripts[tool], *args])


def test_parallel_jobs_run_side_by_side_and_log_each(monkeypatch, tmp_path):
    """Each job marks that it started and waits for the other's mark: one after the other, both would fail."""
    wait_for_other = ("import os, sys, time; from pathlib import Path\n"
                      "me, other = Path(sys.argv[1]), Path(sys.argv[2]); me.touch()\n"
                      "deadline = time.monotonic() + 30\n"
                      "while not other.exists():\n"
                      "    if time.monotonic() > deadline: raise SystemExit('RuntimeError: ran alone')\n"
                      "    time.sleep(0.01)\n"
                      "print(me.name, os.environ.get('OMP_NUM_THREADS'))\n")
    _scripted(monkeypatch, {"train": wait_for_other})
    a, b = str(tmp_path / "a.started"), str(tmp_path / "b.started")
    outputs = fairseq_run.run_fairseq_parallel({"a": ("train", [a, b]), "b": ("train", [b, a])}, tmp_path / "logs",
                                               threads_each=1, timeout=60)
    assert outputs["a"].splitlines()[-1] == "a.started 1" and outputs["b"].splitlines()[-1] == "b.started 1"
    assert (tmp_path / "logs" / "b.log").read_text() == outputs["b"] and outputs["b"].startswith("$ python -c")


def test_a_failed_parallel_job_is_named_and_stops_the_others(monkeypatch, tmp_path):
    _scripted(monkeypatch, {"generate": "raise SystemExit('ValueError: bad data')",
                            "train": "import time; time.sleep(60)"})
    started = time.monotonic()  # not a speed goal: a slow job that was waited for takes the full 60 s
    with pytest.raises(fairseq_run.FairseqError, match=r"^bad: fairseq-generate failed \(exit 1\): ValueError: "
                                                        r"bad data \(full output: .*bad.log\)$"):
        fairseq_run.run_fairseq_parallel({"bad": ("generate", []), "slow": ("train", [])}, tmp_path)
    assert time.monotonic() - started < 30  # the slow job was stopped, not waited for


def test_a_parallel_job_past_the_timeout_is_killed(monkeypatch, tmp_path):
    _scripted(monkeypatch, {"train": "import time; time.sleep(60)"})
    with pytest.raises(fairseq_run.FairseqError, match=r"^slow: fairseq-train failed \(killed after 1 s\)"):
        fairseq_run.run_fairseq_parallel({"slow": ("train", [])}, tmp_path, timeout=1)


@pytest.mark.parametrize(("output", "expected"), [
    (["setup", "Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad value", "",
      "hydra noise"], "ValueError: bad value"),
    (["usage: fairseq-train [-h]", "fairseq-train: error: unrecognized arguments: --bogus"],
     "fairseq-train: error: unrecognized arguments: --bogus"),
    (["a", "last words"], "last words"),
])
def test_error_line_picks_the_real_error(output, expected):
    assert fairseq_run.error_line(output) == expected


def test_progress_bar_completes_on_success(monkeypatch, capsys):
    """fairseq logs every few batches: a run that ends fine fills the bar to 100%."""
    script = "print('INFO | fairseq.logging.progress_bar | :     40 / 44 wps=1')"
    monkeypatch.setattr(fairseq_run, "fairseq_command", lambda tool, args: ["python", "-c", script])
    fairseq_run.run_fairseq("generate", [], progress="distilling")
    assert "44/44" in capsys.readouterr().err


def test_read_hypotheses_orders_by_id_and_names_the_missing(tmp_path: Path):
    results = tmp_path / "generate-train.txt"
    results.write_text("S-1\tsource one\nH-1\t-0.2\t▁b ▁c\nD-1\t-0.2\tb c\nH-0\t-0.1\t▁a\tb\nH-2\t-1.0\t\n"
                       "Generate train with beam=4: BLEU = 1.0\n", encoding="utf-8")
    assert read_hypotheses(results, 3) == ["▁a\tb", "▁b ▁c", ""]  # dataset order; an empty hypothesis is kept
    with pytest.raises(ValueError, match=r"no hypothesis for 2 of 5 sentences \(first: \[3, 4\]\)"):
        read_hypotheses(results, 5)
