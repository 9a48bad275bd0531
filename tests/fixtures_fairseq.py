"""Tiny real checkpoints in seconds: fairseq-preprocess + fairseq-train --user-dir on real Bible verse pairs.

fairseq-preprocess runs in this process, fairseq-train in subprocesses side by side. Plain functions, used by
the session fixture ``tiny_checkpoints`` (tests/conftest.py) and by ``benchmarks/bench_server.py --tiny``. The
models are trained for a few updates only: they produce well-formed but meaningless translations.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import NamedTuple

from vqnat.checkpoint import mark_own_save_dir
from vqnat.pipeline import fairseq_run
from vqnat.pipeline.fairseq_run import USER_DIR

GENESIS = 1


class TinyCheckpoints(NamedTuple):
    data_bin: Path  # joined whitespace dictionary, train/valid/test splits
    nat: Path  # latent transformer (vqnat_lt_tiny)
    teacher: Path | None  # 1+1 layer autoregressive transformer, None when not asked for
    log: str  # fairseq-train output of the NAT model


def run_fairseq(tool: str, *args: str) -> str:
    """fairseq's ``tool`` with vqnat's plugins in a subprocess (checkpoint unpickling allowed); its output."""
    return run_fairseq_parallel([(tool, list(args))])[0]


def run_fairseq_parallel(commands: list[tuple[str, list[str]]]) -> list[str]:
    """Several fairseq commands side by side (their start-up is mostly imports), one torch thread each when more
    than one; the outputs, in order. Logs go to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="fairseq-logs-") as logs:
        outputs = fairseq_run.run_fairseq_parallel(
            {str(i): command for i, command in enumerate(commands)}, logs,
            threads_each=1 if len(commands) > 1 else None, timeout=300)
    return [outputs[str(i)] for i in range(len(commands))]


def genesis_pairs(count: int = 200) -> list[tuple[str, str]]:
    """The first ``count`` cleaned English -> German verse pairs of Genesis."""
    from vqnat.data.bible import read_verse_pairs

    return [(p.src, p.tgt) for p in read_verse_pairs(books=[GENESIS])[:count]]


def preprocess(work: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """Write raw en/de splits under ``work`` and binarize them with a joined dictionary; the data-bin folder."""
    for split, pairs in splits.items():
        (work / f"{split}.en").write_text("".join(s + "\n" for s, _ in pairs))
        (work / f"{split}.de").write_text("".join(t + "\n" for _, t in pairs))
    data = work / "data-bin"
    prefixes = [arg for split in splits for arg in (f"--{split}pref", str(work / split))]
    argv = ["--source-lang", "en", "--target-lang", "de", *prefixes, "--destdir", str(data),
            "--joined-dictionary", "--workers", "1"]
    from fairseq import options
    from fairseq_cli import preprocess as fairseq_preprocess

    # in-process: fairseq is imported already, and a subprocess would spend most of its time importing it
    fairseq_preprocess.main(options.get_preprocessing_parser().parse_args(argv))
    return data


def nat_train_args(data: Path, save: Path, max_update: int = 6) -> list[str]:
    """fairseq-train arguments of a tiny latent transformer (soft EM, 3 samples)."""
    return [str(data), "--user-dir", USER_DIR, "--task", "vqnat_translation", "--arch", "vqnat_lt_tiny",
            "--criterion", "vqnat_latent_transformer_loss", "--bottleneck", "soft", "--num-samples", "3",
            "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1024", "--max-update", str(max_update),
            "--required-batch-size-multiple", "1", "--save-dir", str(save), "--no-epoch-checkpoints",
            "--log-format", "simple", "--log-interval", "1", "--seed", "1", "--num-workers", "0", "--cpu"]


def teacher_train_args(data: Path, save: Path, max_update: int = 3) -> list[str]:
    """fairseq-train arguments of a tiny 1+1 layer autoregressive transformer (a stand-in for the teacher)."""
    return [str(data), "--task", "translation", "--arch", "transformer", "--encoder-layers", "1",
            "--decoder-layers", "1", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
            "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
            "--decoder-attention-heads", "2", "--share-all-embeddings", "--optimizer", "adam", "--lr", "1e-3",
            "--max-tokens", "1024", "--max-update", str(max_update), "--required-batch-size-multiple", "1",
            "--save-dir", str(save), "--no-epoch-checkpoints", "--seed", "1", "--num-workers", "0", "--cpu"]


def train_tiny_checkpoints(work: Path, pairs: list[tuple[str, str]] | None = None, teacher: bool = True,
                           num_test: int = 11) -> TinyCheckpoints:
    """Preprocess 120/20/``num_test`` pairs and train a tiny NAT model (and teacher) under ``work`` (~15 s)."""
    pairs = pairs if pairs is not None else genesis_pairs()
    splits = {"train": pairs[:120], "valid": pairs[120:140], "test": pairs[140:140 + num_test]}
    data = preprocess(work, splits)
    for save_dir in ("checkpoints", "teacher"):  # vqnat's own training folders: their checkpoints load untrusted
        mark_own_save_dir(work / save_dir)
    commands = [("train", nat_train_args(data, work / "checkpoints"))]
    if teacher:
        commands.append(("train", teacher_train_args(data, work / "teacher")))
    log = run_fairseq_parallel(commands)[0]
    return TinyCheckpoints(data, work / "checkpoints" / "checkpoint_last.pt",
                           work / "teacher" / "checkpoint_last.pt" if teacher else None, log)
