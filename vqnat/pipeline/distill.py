"""Sequence-level knowledge distillation (Kim & Rush 2016): the teacher's beam output becomes the NAT's target.

The teacher decodes the binarized training source with fairseq-generate (beam search); its hypotheses, in
sentencepiece pieces, replace the training targets; valid and test keep their real references. The result is a
prepared folder like the original (same dictionary and tokenizer), so every other command accepts it.

fairseq-generate writes to a results file that is read line by line (its output for a WMT-sized corpus is
gigabytes: it is never held in memory), and a progress bar follows its batches. On a GPU the teacher decodes in
fp16 (fairseq-generate's ``--fp16`` halves the model, as fairseq's own WMT examples decode); fairseq 0.12 has no
bf16 decoding on GPUs (its ``--bf16`` implies ``--tpu``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from vqnat.checkpoint import bundle_to_checkpoint, check_trusted, is_bundle, read_bundle_config
from vqnat.inference import DecodingOptions
from vqnat.pipeline.evaluate import evaluate_checkpoint
from vqnat.pipeline.fairseq_run import run_fairseq
from vqnat.pipeline.prepared import PreparedFolder, open_prepared

logger = logging.getLogger(__name__)

def read_hypotheses(results: Path, expected: int) -> list[str]:
    """The ``H-<id>\t<score>\t<pieces>`` lines of a fairseq-generate results file, by sentence id (0 ..
    expected - 1); raises ValueError naming the missing ids."""
    found: list[str | None] = [None] * expected
    with results.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("H-"):
                head, _, text = line.rstrip("\n").split("\t", 2)
                index = int(head[2:])
                if index < expected:
                    found[index] = text
    missing = [i for i, text in enumerate(found) if text is None]
    if missing:
        raise ValueError(f"the teacher produced no hypothesis for {len(missing)} of {expected} sentences "
                         f"(first: {missing[:5]}); see {results}")
    return found  # type: ignore[return-value]


def check_teacher_checkpoint(teacher: Path, folder: PreparedFolder) -> None:
    """Raise ``ValueError`` (one line) unless ``teacher`` is an autoregressive translation checkpoint whose
    vocabulary is as large as ``folder``'s dictionary (the checks fairseq-generate would fail on, in a page of
    output)."""
    from vqnat.checkpoint import read_checkpoint

    state = read_checkpoint(teacher, trust=True)  # the caller has checked that it may load
    task, model = _name(state["cfg"]["task"]), _name(state["cfg"]["model"])
    if task != "translation":
        raise ValueError(f"{teacher} is a {model} model ({task} task), not an autoregressive teacher: distill with "
                         "a checkpoint of `vqnat train teacher`")
    embeddings = state["model"].get("encoder.embed_tokens.weight")
    dictionary = folder.data_bin / f"dict.{folder.src_lang}.txt"
    entries = 4 + sum(1 for _ in dictionary.open(encoding="utf-8"))  # + <s>, <pad>, </s>, <unk>
    if embeddings is not None and embeddings.shape[0] != entries:
        raise ValueError(f"{teacher} has a vocabulary of {embeddings.shape[0]} entries, {folder.root}'s dictionary "
                         f"{entries}: distill data prepared with the teacher's own sentencepiece model and "
                         "dictionaries")


def _name(section: object) -> str | None:
    """The ``_name`` of a fairseq config section (a dict-like config, or the Namespace of a legacy model)."""
    if isinstance(section, dict) or hasattr(section, "get"):
        return section.get("_name")  # type: ignore[union-attr]
    return getattr(section, "_name", None) or getattr(section, "arch", None)


def teacher_hypotheses(teacher: Path, folder: PreparedFolder, split: str, beam: int, max_tokens: int,
                       cpu: bool, log_path: Path | None, results_dir: Path) -> list[str]:
    """Beam-search ``split`` of the binarized data: one piece string per sentence, in dataset order.

    fairseq-generate writes ``results_dir/generate-<split>.txt``; it is removed once read."""
    run_fairseq("generate", [
        str(folder.data_bin), "--path", str(teacher), "--gen-subset", split, "--beam", str(beam), "--nbest", "1",
        "--max-tokens", str(max_tokens), "--required-batch-size-multiple", "1", "--max-len-a", "1.2",
        "--max-len-b", "10", "--num-workers", "0", "--scoring", "sacrebleu", "--results-path", str(results_dir),
        "--log-format", "simple", "--log-interval", "10", *(["--cpu"] if cpu else ["--fp16"])],
        log_path=log_path, keep_output=False, progress=f"distilling {split} (teacher beam {beam})")
    results = results_dir / f"generate-{split}.txt"
    hypotheses = read_hypotheses(results, int(folder.manifest["sizes"][split]))
    results.unlink()
    if not any(results_dir.iterdir()):
        results_dir.rmdir()
    return hypotheses


def distill(teacher: str | Path, prepared: str | Path, out_dir: str | Path, beam: int = 4, max_tokens: int = 8192,
            cpu: bool = True, force: bool = False, validate: bool = True,
            trust_checkpoint: bool = False) -> dict[str, object]:
    """Write a distilled prepared folder at ``out_dir`` and return a report (with the teacher's valid BLEU).

    ``teacher``: a bundle (its dictionaries must be ``prepared``'s) or a checkpoint (see :meth:`Translator.load`).
    """
    teacher, folder, out = Path(teacher), open_prepared(prepared), Path(out_dir)
    if is_bundle(teacher):
        if read_bundle_config(teacher)["kind"] != "teacher":
            raise ValueError(f"{teacher} is a NAT bundle, not an autoregressive teacher: distill with a teacher")
        for lang in (folder.src_lang, folder.tgt_lang):
            theirs, ours = teacher / f"dict.{lang}.txt", folder.data_bin / f"dict.{lang}.txt"
            if not theirs.is_file() or theirs.read_bytes() != ours.read_bytes():
                raise ValueError(f"the teacher bundle {teacher} has other dictionaries than {folder.root}: distill "
                                 "data prepared with the teacher's own sentencepiece model and dictionaries")
    elif not teacher.is_file():
        raise ValueError(f"teacher checkpoint not found: {teacher}")
    else:
        check_trusted(teacher, trust_checkpoint)
        check_teacher_checkpoint(teacher, folder)
    report_path = out / "distill.json"
    if report_path.is_file() and not force:
        logger.info("%s already distilled (use --force to redo)", out)
        return json.loads(report_path.read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "distill.log"
    src, tgt = folder.src_lang, folder.tgt_lang
    pieces = out / "spm"
    pieces.mkdir(exist_ok=True)
    generator = bundle_to_checkpoint(teacher, out / "teacher-from-bundle.pt") if is_bundle(teacher) else teacher
    hyps = teacher_hypotheses(generator, folder, "train", beam, max_tokens, cpu, log, results_dir=out / "generate")
    if generator != teacher:
        generator.unlink()
    source_pieces = (folder.root / "spm" / f"train.{src}").read_text(encoding="utf-8").splitlines()
    if len(source_pieces) != len(hyps):
        raise ValueError(f"{len(source_pieces)} training sources but {len(hyps)} hypotheses")
    (pieces / f"train.{src}").write_text("\n".join(source_pieces) + "\n", encoding="utf-8")
    (pieces / f"train.{tgt}").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    splits = [s for s in ("valid", "test") if (folder.root / "spm" / f"{s}.{src}").is_file()]
    for split in splits:
        for lang in (src, tgt):
            shutil.copyfile(folder.root / "spm" / f"{split}.{lang}", pieces / f"{split}.{lang}")
    (out / "raw").mkdir(exist_ok=True)
    for split in splits:
        for lang in (src, tgt):
            shutil.copyfile(folder.root / "raw" / f"{split}.{lang}", out / "raw" / f"{split}.{lang}")
    for name in ("spm.model", "spm.vocab"):
        if (folder.root / name).is_file():
            shutil.copyfile(folder.root / name, out / name)
    data_bin = out / "data-bin"
    if data_bin.exists():
        shutil.rmtree(data_bin)
    run_fairseq("preprocess", [
        "--source-lang", src, "--target-lang", tgt, "--trainpref", str(pieces / "train"),
        *[a for s in splits for a in (f"--{s}pref", str(pieces / s))], "--destdir", str(data_bin),
        "--srcdict", str(folder.data_bin / f"dict.{src}.txt"), "--joined-dictionary", "--workers", "2"],
        log_path=log)
    manifest = dict(folder.manifest)
    manifest["distilled"] = {"teacher": str(teacher), "beam": beam, "from": str(folder.root)}
    (out / "prepare.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    changed = sum(h != r for h, r in zip(hyps, (folder.root / "spm" / f"train.{tgt}").read_text(
        encoding="utf-8").splitlines(), strict=True))
    report: dict[str, object] = {"out_dir": str(out), "teacher": str(teacher), "beam": beam,
                                 "train_sentences": len(hyps), "targets_changed": changed}
    if validate and "valid" in splits:
        report["teacher_valid"] = evaluate_checkpoint(teacher, folder.root, split="valid",
                                                      options=DecodingOptions(beam=beam), trust_checkpoint=True,
                                                      device="cpu" if cpu else "cuda")
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report

