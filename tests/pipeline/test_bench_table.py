"""The bench's text table stays aligned whatever the system names."""

from __future__ import annotations

from vqnat.pipeline.bench import format_table


def _row(bleu: float) -> dict[str, float]:
    return {"bleu": bleu, "chrf": 40.0, "batch1_median_ms": 12.0, "batch1_p90_ms": 15.0,
            "large_batch_sentences_per_s": 300.0, "speedup_batch1": 5.0, "speedup_large_batch": 1.5}


def test_table_columns_line_up_with_long_system_names():
    names = ["nat soft", "nat soft, length predictor (197 s H200 + 1.9 h CPU)", "teacher greedy"]
    lines = format_table({"systems": {name: _row(10.0 + i) for i, name in enumerate(names)}}).splitlines()
    assert len({len(line) for line in lines}) == 1  # header, rule and rows are equally long
    bleu_end = lines[0].index("BLEU") + len("BLEU")
    for line, name, bleu in zip(lines[2:], names, ["10.00", "11.00", "12.00"], strict=True):
        assert line.startswith(name + " ") and line[bleu_end - len(bleu):bleu_end] == bleu
