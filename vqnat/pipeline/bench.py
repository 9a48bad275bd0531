"""Latency comparison of the latent transformer against its autoregressive teacher, in one process.

Every system translates the same sentences on the same machine with the same number of threads, interleaved:
- batch 1: one sentence per call; per-sentence latency median and p90 (ms);
- large batch: all sentences, ``large_batch`` per call (sorted by length); sentences per second;
- BLEU / chrF of the large-batch outputs.
Speedups are ratios to the teacher's greedy decoding. Each system is warmed up before timing.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from vqnat.inference import DecodingOptions, Translator
from vqnat.machine import machine_record
from vqnat.pipeline.evaluate import score
from vqnat.pipeline.prepared import open_prepared

logger = logging.getLogger(__name__)


_KINDS = {"nat": "a NAT", "autoregressive": "an autoregressive model"}


class System(NamedTuple):
    """One row of the comparison: a model (bundle or checkpoint) and how it decodes. ``rescorer``: the teacher for
    noisy parallel decoding (NAT only); ``int8``: dynamic int8 quantization of its Linear layers."""

    name: str
    checkpoint: Path
    options: DecodingOptions
    rescorer: Path | None = None
    int8: bool = False
    kind: str | None = None  # "nat" or "autoregressive": the model must be one (None: either)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_bench(systems: Sequence[System], prepared: str | Path, split: str = "test", limit: int | None = None,
              **kwargs) -> dict[str, object]:
    """:func:`bench_sentences` on ``split`` of a prepared folder (the first ``limit`` sentences)."""
    folder = open_prepared(prepared)
    sources, references = folder.read_raw(split, "src"), folder.read_raw(split, "tgt")
    if limit:
        sources, references = sources[:limit], references[:limit]
    return bench_sentences(systems, sources, references, split=split, data_dir=folder.data_bin, **kwargs)


def bench_sentences(systems: Sequence[System], sources: Sequence[str], references: Sequence[str],
                    split: str = "test", data_dir: Path | None = None, large_batch: int = 128, threads: int = 2,
                    baseline: str = "teacher greedy", warmup: int = 5, progress: Callable[[str], None] | None = None,
                    device: str = "cpu", trust_checkpoint: bool = False, batch1: int | None = None,
                    repeats: int = 2, examples: int = 0) -> dict[str, object]:
    """Time every system on the same sentences; ``baseline`` names the system speedups are relative to.
    ``device``: where the models run (``cuda``: each call returns strings, so its time includes the GPU's work).
    ``data_dir``: dictionaries for checkpoints (bundles carry theirs). ``batch1``: time batch 1 on only the first
    this many sentences (None: all); BLEU and the large batches always use all of them. ``repeats``: large-batch
    runs per system (the best counts). ``examples``: keep this many of each system's translations in the report.

    Systems are interleaved (each sentence is translated by every system in turn, and the large-batch runs
    alternate), so a change in machine load affects all of them alike rather than whichever ran at that moment.
    """
    torch.set_num_threads(threads)
    translators = {}
    for system in systems:
        translators[system.name] = Translator.load(system.checkpoint, data_dir=data_dir, options=system.options,
                                                   rescorer=system.rescorer, device=device,
                                                   trust_checkpoint=trust_checkpoint, int8=system.int8)
        if system.kind and translators[system.name].kind != system.kind:
            raise ValueError(f"{system.checkpoint} is {_KINDS[translators[system.name].kind]}, but the "
                             f"{system.name!r} row takes {_KINDS[system.kind]}: are --nat and --teacher swapped?")
        for sentence in sources[:warmup]:
            translators[system.name].translate([sentence])
    timed = sources[:batch1] if batch1 else sources
    if progress:
        progress(f"timing {', '.join(translators)} on {len(timed)} {split} sentences, batch 1")
    latencies: dict[str, list[float]] = {name: [] for name in translators}
    for sentence in timed:
        for name, translator in translators.items():
            start = time.perf_counter()
            translator.translate([sentence])
            latencies[name].append((time.perf_counter() - start) * 1e3)
    if progress:
        progress(f"large batches of {large_batch}")
    seconds: dict[str, list[float]] = {name: [] for name in translators}
    hypotheses: dict[str, list[str]] = {}
    for _ in range(repeats):  # best of alternating runs
        for name, translator in translators.items():
            start = time.perf_counter()
            hypotheses[name] = translator.translate(sources, batch_size=large_batch)
            seconds[name].append(time.perf_counter() - start)
    results: dict[str, dict[str, object]] = {}
    for system in systems:
        name = system.name
        quality = score(hypotheses[name], references)
        best = min(seconds[name])
        results[name] = {"checkpoint": str(system.checkpoint), "kind": translators[name].kind,
                         "int8": system.int8, "beam": system.options.beam, "latent_beam": system.options.latent_beam,
                         "rescorer": str(system.rescorer) if system.rescorer else None,
                         "parameters": translators[name].describe()["parameters"],
                         "batch1_median_ms": round(statistics.median(latencies[name]), 2),
                         "batch1_p90_ms": round(percentile(latencies[name], 90), 2),
                         "large_batch_sentences_per_s": round(len(sources) / best, 1),
                         "large_batch_seconds": round(best, 2), "bleu": quality.bleu, "chrf": quality.chrf}
        if examples:
            results[name]["examples"] = hypotheses[name][:examples]
    if baseline in results:
        base = results[baseline]
        for row in results.values():
            row["speedup_batch1"] = round(base["batch1_median_ms"] / row["batch1_median_ms"], 2)
            row["speedup_large_batch"] = round(row["large_batch_sentences_per_s"] / base["large_batch_sentences_per_s"],
                                               2)
            row["bleu_delta"] = round(row["bleu"] - base["bleu"], 2)
    return {"split": split, "sentences": len(sources), "batch1_sentences": len(timed), "large_batch": large_batch,
            "threads": threads,
            "baseline": baseline, "device": device, "bleu_signature": quality.bleu_signature,
            "machine": machine_record(),
            "load_average": _load_average(), "systems": results}


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def format_table(report: dict[str, object]) -> str:
    """The report as an aligned text table (the first column as wide as the longest system name)."""
    width = max([24, *(len(name) + 2 for name in report["systems"])])  # type: ignore[union-attr]
    header = (f"{'system':<{width}}{'BLEU':>7}{'chrF':>7}{'b1 med ms':>11}{'b1 p90 ms':>11}{'sent/s':>9}"
              f"{'x b1':>7}{'x large':>9}")
    lines = [header, "-" * len(header)]
    nan = float("nan")
    for name, row in report["systems"].items():  # type: ignore[union-attr]
        lines.append(f"{name:<{width}}{row['bleu']:>7.2f}{row['chrf']:>7.1f}{row['batch1_median_ms']:>11.1f}"
                     f"{row['batch1_p90_ms']:>11.1f}{row['large_batch_sentences_per_s']:>9.1f}"
                     f"{row.get('speedup_batch1', nan):>7.2f}{row.get('speedup_large_batch', nan):>9.2f}")
    return "\n".join(lines)


def plot_report(report: dict[str, object], path: str | Path) -> None:
    """Horizontal bar charts (one row per system, BLEU in its label): batch-1 median latency and large-batch
    throughput, with each bar's value written next to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]  # type: ignore[assignment]
    names = [f"{n} (BLEU {r['bleu']:.1f})" for n, r in systems.items()]
    rows = range(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.45 * len(names)), sharey=True)
    panels = ((left, "batch1_median_ms", "tab:blue", "ms per sentence, batch 1 (median): lower is better"),
              (right, "large_batch_sentences_per_s", "tab:green",
               f"sentences / s, batch {report['large_batch']}: higher is better"))
    for ax, key, color, title in panels:
        values = [r[key] for r in systems.values()]
        ax.barh(rows, values, color=color)
        for row, value in zip(rows, values, strict=True):
            ax.text(value, row, f" {value:.1f}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(values) * 1.18)
    left.set_yticks(list(rows), names, fontsize=9)
    left.invert_yaxis()  # first system on top
    fig.suptitle(f"{report['sentences']} {report['split']} sentences, {report['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
