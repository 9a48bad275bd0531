"""How the target-length rule and latent search change the latent transformer's BLEU.

For trained NAT checkpoints, translate the test split under several decoding settings and report sacreBLEU,
chrF, the mean number of decoded target positions T' per sentence (the decoder's and output projection's work),
the share of sentences whose output has no EOS (cut by too short a T'), and the wall time of the whole split:

- the ratio rule at inference, T' = 8 ceil((ratio |x| + offset) / 8), whatever rule the model was trained with;
- the length predictor (for a model trained with ``--length-predictor``), with several safety offsets;
- beam search over the latents, and noisy parallel decoding (the teacher rescores the latent-beam candidates).

    python recipes/bible_en_de/length_rule.py --ratio-model NAT_RATIO.pt --predictor-model NAT_LENPRED.pt \
        --teacher TEACHER.pt --data work/bible-distilled --out results/length_rule_bible.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vqnat.inference import DecodingOptions, Translator  # noqa: E402
from vqnat.machine import machine_record  # noqa: E402
from vqnat.pipeline.evaluate import score  # noqa: E402
from vqnat.pipeline.prepared import open_prepared  # noqa: E402

RATIO_SETTINGS = [(1.0, 0), (1.0, 4), (1.2, 4), (1.5, 0), (2.0, 0)]
PREDICTOR_OFFSETS = [0, 2, 4]


def decoded_positions(translator: Translator, sources: list[str]) -> tuple[float, float]:
    """Mean T' per sentence and the share of sentences whose decoder output reaches T' without an EOS."""
    model = translator.model
    total, cut = 0, 0
    with torch.no_grad():
        for start in range(0, len(sources), 128):
            batch = [translator.encode(s) for s in sources[start : start + 128]]
            lengths = torch.tensor([len(t) for t in batch])
            tokens = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True, padding_value=translator.src_dict.pad())
            out = model.translate(tokens, lengths)
            target_lengths = model.target_lengths(lengths, length_logits=model.predict_length_logits(
                *model.encode(tokens)))
            total += int(target_lengths.sum())
            has_eos = out.tokens.eq(translator.tgt_dict.eos()).any(1)
            cut += int((~has_eos).sum())
    return total / len(sources), cut / len(sources)


def run(name: str, checkpoint: Path, folder, sources: list[str], references: list[str], options: DecodingOptions,
        rescorer: Path | None = None) -> dict[str, object]:
    translator = Translator.load(checkpoint, data_dir=folder.data_bin, options=options, rescorer=rescorer)
    start = time.perf_counter()
    hypotheses = translator.translate(sources, batch_size=128)
    seconds = time.perf_counter() - start
    quality = score(hypotheses, references)
    positions, cut = decoded_positions(translator, sources)
    row = {"setting": name, "checkpoint": str(checkpoint), **translator.describe(), "bleu": quality.bleu,
           "chrf": quality.chrf, "mean_target_positions": round(positions, 1), "share_without_eos": round(cut, 4),
           "seconds_batch128": round(seconds, 2)}
    print(f"{name:<44} BLEU {quality.bleu:6.2f}  chrF {quality.chrf:5.1f}  T' {positions:5.1f}  "
          f"no-EOS {cut:6.2%}  {seconds:6.1f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio-model", type=Path, required=True, help="NAT trained with the ratio rule")
    parser.add_argument("--predictor-model", type=Path, help="NAT trained with --length-predictor")
    parser.add_argument("--teacher", type=Path, help="teacher checkpoint, for noisy parallel decoding rows")
    parser.add_argument("--data", type=Path, required=True, help="prepared folder (its test split is used)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/length_rule_bible.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = open_prepared(args.data)
    sources, references = folder.read_raw(args.split, "src"), folder.read_raw(args.split, "tgt")
    rows = []
    trained = Translator.load(args.ratio_model, data_dir=folder.data_bin).model.cfg
    print(f"ratio model trained with ratio {trained.length_ratio}, offset {trained.length_offset}")
    for ratio, offset in RATIO_SETTINGS:
        rows.append(run(f"ratio model, ratio {ratio} + {offset}", args.ratio_model, folder, sources, references,
                        DecodingOptions(length_ratio=ratio, length_offset=offset)))
    if args.predictor_model:
        for offset in PREDICTOR_OFFSETS:
            rows.append(run(f"predictor model, predicted + {offset}", args.predictor_model, folder, sources,
                            references, DecodingOptions(length_offset=offset)))
    best = args.predictor_model or args.ratio_model
    for beam in (4,):
        rows.append(run(f"{best.stem}, latent beam {beam}", best, folder, sources, references,
                        DecodingOptions(latent_beam=beam)))
        if args.teacher:
            rows.append(run(f"{best.stem}, latent beam {beam} + teacher rescoring", best, folder, sources,
                            references, DecodingOptions(latent_beam=beam), rescorer=args.teacher))
    report = {"split": args.split, "sentences": len(sources), "threads": args.threads, "machine": machine_record(),
              "command": " ".join(sys.argv), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
