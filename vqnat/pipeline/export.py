"""``vqnat export``: a checkpoint -> a model bundle, scored on a prepared folder's valid and test splits.

The scores (sacreBLEU and chrF, with signatures) are measured on the written bundle itself, so they also prove
that the bundle loads and translates; they go into the bundle's ``config.json`` and model card.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vqnat.checkpoint import export_bundle, read_bundle_config, write_bundle_config
from vqnat.inference import DecodingOptions, Translator
from vqnat.pipeline.evaluate import evaluate_checkpoint
from vqnat.pipeline.prepared import open_prepared

TEACHER_BEAMS = (1, 4)  # a teacher is scored greedy and with beam 4: the NAT's two reference points


def describe_data(prepared: str | Path, held_out_only: bool = False) -> str:
    """One line about a prepared folder: its corpus, sizes and, for a distilled one, the teacher's beam
    (``held_out_only``: only valid and test, whose references are always the real ones)."""
    folder = open_prepared(prepared)
    manifest = folder.manifest
    source = manifest.get("source", {})
    versions = source.get("versions", {})
    corpus = (f"Bible {versions.get(source.get('src_version'), '?')} -> {versions.get(source.get('tgt_version'), '?')}"
              if source.get("source") == "bible" else str(source.get("source", folder.root.name)))
    sizes = manifest.get("sizes", {})
    if held_out_only:
        sizes = {k: v for k, v in sizes.items() if k != "train"}
    distilled = manifest.get("distilled")
    tail = f"; targets distilled by a teacher with beam {distilled['beam']}" if distilled and not held_out_only else ""
    listed = ", ".join(f"{k} {v:,}" for k, v in sizes.items())
    return f"{corpus} ({folder.src_lang} -> {folder.tgt_lang}; {listed}{tail})"


def score_bundle(bundle: str | Path, prepared: str | Path, splits: tuple[str, ...] = ("valid", "test"),
                 say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """BLEU/chrF rows of a bundle on ``splits`` (a teacher: greedy and beam 4; a NAT: greedy latents)."""
    config = read_bundle_config(bundle)
    kind = config["kind"]
    collapsed = ", repeats collapsed" if config["task"].get("collapse_repeated_tokens") else ""
    rows = []
    for beam in TEACHER_BEAMS if kind == "teacher" else (1,):
        translator = Translator.load(bundle, options=DecodingOptions(beam=beam))
        decoding = ("greedy" if beam == 1 else f"beam {beam}") if kind == "teacher" else f"greedy latents{collapsed}"
        for split in splits:
            result = evaluate_checkpoint(bundle, prepared, split=split, translator=translator, batch_size=128)
            rows.append({"split": split, "decoding": decoding, "sentences": result["sentences"],
                         "bleu": result["bleu"], "chrf": result["chrf"], "bleu_signature": result["bleu_signature"],
                         "chrf_signature": result["chrf_signature"]})
            if say:
                say(f"{split} {decoding}: BLEU {result['bleu']:.2f}, chrF {result['chrf']:.2f}")
    return rows


def export_model(checkpoint: str | Path, out: str | Path, *, data_dir: str | Path | None = None,
                 dtype: str = "float16", inference_only: bool = False, trust: bool = False,
                 evaluate_on: str | Path | None = None, notes: str | None = None,
                 collapse_repeats: bool | None = None, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` as a bundle in ``out``; with ``evaluate_on`` (a prepared folder), score it there. The
    provenance records the training data the checkpoint names (described when that folder is here), the scores
    and ``notes`` (free text, e.g. how the model was trained). ``collapse_repeats`` (a NAT) sets the bundle's
    decoding default for dropping repeated tokens (the task's ``collapse_repeated_tokens``; the scores use it).
    Returns the bundle's config."""
    export_bundle(checkpoint, out, data_dir=data_dir, dtype=dtype, inference_only=inference_only, trust=trust)
    config = read_bundle_config(out)
    provenance = config["provenance"]
    provenance["data"] = _describe_if_prepared(Path(provenance["trained_on"]))
    if notes:
        provenance["notes"] = notes
    if collapse_repeats is not None:
        if config["kind"] != "nat":
            raise ValueError("collapse_repeats is a NAT decoding setting: the teacher decodes with beam search")
        config["task"]["collapse_repeated_tokens"] = collapse_repeats
        write_bundle_config(out, config)  # before scoring: the scores are the bundle's own decoding
    if evaluate_on is not None:
        provenance["scored_on"] = describe_data(evaluate_on, held_out_only=True)
        provenance["scores"] = score_bundle(out, evaluate_on, say=say)
    write_bundle_config(out, config)
    return config


def _describe_if_prepared(folder: Path) -> str:
    """:func:`describe_data` of a prepared folder (or of the one holding a data-bin), else the recorded path."""
    for root in (folder, folder.parent):
        try:
            return describe_data(root)
        except ValueError:
            continue
    return f"{folder} (as recorded in the checkpoint; not on this machine)"
