"""Running fairseq tools: progress lines, bounded output, and reading generate's results file."""

from __future__ import annotations

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
