"""Training recipes as fairseq argument lists: the autoregressive teacher and the latent transformer.

The teacher is a small fairseq Transformer baseline (3+3 layers, 256 dim, 4 heads, ffn 1024, shared
embeddings, dropout 0.2, Adam (0.9, 0.98), lr 7e-4 inverse_sqrt, 1000 warm-up updates, label smoothing 0.1,
4096 tokens per batch). ``size`` presets only change the sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vqnat.pipeline.fairseq_run import USER_DIR
from vqnat.quantization.config import QuantizerConfig

TEACHER_SIZES: dict[str, dict[str, int]] = {
    # layers (encoder, decoder), model dim, ffn dim, heads
    "tiny": {"enc": 1, "dec": 1, "dim": 32, "ffn": 64, "heads": 2},
    "cpu": {"enc": 3, "dec": 3, "dim": 256, "ffn": 1024, "heads": 4},
    # Deep encoder, shallow decoder (Kasai et al. 2021): the fair autoregressive competitor of a NAT.
    "cpu-deep-shallow": {"enc": 6, "dec": 1, "dim": 256, "ffn": 1024, "heads": 4},
    "base": {"enc": 6, "dec": 6, "dim": 512, "ffn": 2048, "heads": 8},
    "big": {"enc": 6, "dec": 6, "dim": 1024, "ffn": 4096, "heads": 16},
}
NAT_ARCHS = ("vqnat_lt_tiny", "vqnat_lt_cpu", "vqnat_lt_small", "vqnat_lt_base", "vqnat_lt_big")
# How the NAT picks its target length (see vqnat/models/latent_transformer.py). "predictor" is our default: on the
# Bible test set, after the same 1,460 GPU updates, it scored 12.01 BLEU against 9.35 for the ratio rule
# (1.2 |x| + 4) and decodes fewer positions (results/length_rule_bible.json). "ratio" keeps the model's own
# ratio rule (the reference's 2 |x| unless --length-ratio/--length-offset say otherwise).
NAT_LENGTH_RULES: dict[str, list[str]] = {
    "predictor": ["--length-predictor", "--length-offset", "2"],
    "ratio": [],
}
# Interval checkpoints (--save-interval-updates N) kept on disk, newest first; fairseq's own default keeps all.
# Five, for `vqnat average --last 5`.
KEEP_INTERVAL_UPDATES = 5
# Updates between training progress lines (fairseq's --log-interval).
LOG_INTERVAL = 10


@dataclass(frozen=True)
class TrainBudget:
    """When to stop and how big a batch is. ``max_update`` 0 means no limit."""

    max_epoch: int = 8
    max_update: int = 0
    max_tokens: int = 4096
    lr: float = 7e-4
    warmup_updates: int = 1000
    seed: int = 1
    save_interval_updates: int = 0
    patience: int = -1

    def __post_init__(self) -> None:
        for name in ("max_epoch", "max_update", "warmup_updates", "save_interval_updates"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def _common(data_bin: Path, save_dir: Path, budget: TrainBudget, cpu: bool) -> list[str]:
    args = [str(data_bin), "--save-dir", str(save_dir), "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
            "--lr", str(budget.lr), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(budget.warmup_updates),
            "--max-tokens", str(budget.max_tokens), "--max-epoch", str(budget.max_epoch),
            "--required-batch-size-multiple", "1", "--seed", str(budget.seed), "--no-epoch-checkpoints",
            "--log-format", "simple", "--log-interval", str(LOG_INTERVAL), "--num-workers", "0",
            "--patience", str(budget.patience), "--keep-interval-updates", str(KEEP_INTERVAL_UPDATES)]
    if budget.max_update:
        args += ["--max-update", str(budget.max_update)]
    if budget.save_interval_updates:
        args += ["--save-interval-updates", str(budget.save_interval_updates)]
    if cpu:
        args.append("--cpu")
    return args


def teacher_train_args(data_bin: Path, save_dir: Path, size: str = "cpu", budget: TrainBudget | None = None,
                       dropout: float = 0.2, cpu: bool = True) -> list[str]:
    """fairseq-train arguments of the autoregressive teacher."""
    if size not in TEACHER_SIZES:
        raise ValueError(f"unknown teacher size {size!r}: choose one of {', '.join(TEACHER_SIZES)}")
    s = TEACHER_SIZES[size]
    budget = budget or TrainBudget()
    return _common(data_bin, save_dir, budget, cpu) + [
        "--task", "translation", "--arch", "transformer", "--share-all-embeddings",
        "--encoder-layers", str(s["enc"]), "--decoder-layers", str(s["dec"]),
        "--encoder-embed-dim", str(s["dim"]), "--decoder-embed-dim", str(s["dim"]),
        "--encoder-ffn-embed-dim", str(s["ffn"]), "--decoder-ffn-embed-dim", str(s["ffn"]),
        "--encoder-attention-heads", str(s["heads"]), "--decoder-attention-heads", str(s["heads"]),
        "--dropout", str(dropout), "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--best-checkpoint-metric", "loss"]


def nat_train_args(data_bin: Path, save_dir: Path, arch: str = "vqnat_lt_cpu",
                   bottleneck: str = QuantizerConfig.bottleneck,
                   budget: TrainBudget | None = None, extra: list[str] | None = None, cpu: bool = True,
                   length_rule: str = "predictor") -> list[str]:
    """fairseq-train arguments of the latent transformer (``extra``: any further model/criterion options, which
    come last and so override the length rule's)."""
    if arch not in NAT_ARCHS:
        raise ValueError(f"unknown latent transformer arch {arch!r}: choose one of {', '.join(NAT_ARCHS)}")
    if bottleneck not in ("hard", "soft"):
        raise ValueError(f"bottleneck must be 'hard' or 'soft', got {bottleneck!r}")
    if length_rule not in NAT_LENGTH_RULES:
        raise ValueError(f"length rule must be one of {', '.join(NAT_LENGTH_RULES)}, got {length_rule!r}")
    budget = budget or TrainBudget()
    return _common(data_bin, save_dir, budget, cpu) + [
        "--user-dir", USER_DIR, "--task", "vqnat_translation", "--arch", arch, "--bottleneck", bottleneck,
        "--criterion", "vqnat_latent_transformer_loss", "--best-checkpoint-metric", "full_loss",
        *NAT_LENGTH_RULES[length_rule], *(extra or [])]
