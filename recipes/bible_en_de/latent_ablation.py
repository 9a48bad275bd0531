"""How much a NAT's translations depend on its latents: BLEU with the prior's codes and with codes that carry
no information about the sentence.

    python recipes/bible_en_de/latent_ablation.py NAT.pt PREPARED --out results/latent_ablation.json [--seed 0]

Rows (greedy decoding; the decoder and the target length are unchanged, only the codes differ):
- ``prior``: the latent prior's greedy codes (normal decoding);
- ``shuffled``: another sentence's prior codes (the batch's code sequences permuted);
- ``random``: uniform random codes;
- ``constant``: the batch's most frequent code at every position.
A large drop from ``prior`` means the latents carry much of the translation, so the prior's quality matters.

With a checkpoint that still has its autoencoder (not an ``--inference-only`` export), two oracle rows show what a
perfect prior would give: the decoder reads the codes the autoencoder assigns to a target, at that target's
padded length (as in training):
- ``oracle_teacher`` (needs ``--teacher``): the codes of the teacher's greedy translation, the kind of target the
  NAT was distilled on: the prior's ceiling;
- ``oracle_reference``: the codes of the reference itself (the autoencoder sees the answer): the decoder's ceiling.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.bible_en_de.export_weights import is_inference_only  # noqa: E402
from vqnat.inference import Translator  # noqa: E402
from vqnat.pipeline.evaluate import score  # noqa: E402
from vqnat.pipeline.prepared import open_prepared  # noqa: E402

VARIANTS = ("prior", "shuffled", "random", "constant")


@torch.inference_mode()
def decode_with_target_codes(translator: Translator, sources: list[str], targets: list[str],
                             batch_size: int) -> list[str]:
    """Translate ``sources`` with the codes the autoencoder assigns to ``targets`` (one per source) instead of the
    prior's: the teacher-forced training pass in eval mode (nearest codes), then the decoder's argmax up to EOS."""
    from fairseq.data import data_utils

    model, tgt_dict = translator.model.eval(), translator.tgt_dict
    left_pad = getattr(translator.task.cfg, "left_pad_source", True)
    out = []
    for start in range(0, len(sources), batch_size):
        src = [translator.encode(s) for s in sources[start : start + batch_size]]
        tgt = [translator.encode(t) for t in targets[start : start + batch_size]]  # joined dictionary
        src_tokens = data_utils.collate_tokens(src, tgt_dict.pad(), tgt_dict.eos(), left_pad=left_pad)
        target = data_utils.collate_tokens(tgt, tgt_dict.pad(), tgt_dict.eos(), left_pad=False)
        result = model(src_tokens, torch.tensor([len(t) for t in src]), target)
        tokens = result.token_logits.argmax(-1).masked_fill(~result.token_mask, tgt_dict.pad())  # (B, T')
        for row in tokens.tolist():
            row = row[: row.index(tgt_dict.eos())] if tgt_dict.eos() in row else row
            pieces = tgt_dict.string([t for t in row if t != tgt_dict.pad()])
            out.append(translator.tokenizer.decode(pieces))
    return out


def has_autoencoder(model: torch.nn.Module) -> bool:
    """False for an ``--inference-only`` export, whose autoencoder came back as zeros."""
    return not is_inference_only(model.state_dict())


def replaced_codes(codes: torch.Tensor, variant: str, codebook_size: int, generator: torch.Generator) -> torch.Tensor:
    """Codes ``[B, L, H]`` of the prior -> the variant's codes, same shape."""
    if variant == "prior":
        return codes
    if variant == "shuffled":
        return codes[torch.randperm(codes.shape[0], generator=generator)]
    if variant == "random":
        return torch.randint(0, codebook_size, codes.shape, generator=generator)
    if variant == "constant":
        return torch.full_like(codes, int(torch.bincount(codes.flatten()).argmax()))
    raise ValueError(f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nat", type=Path)
    parser.add_argument("prepared", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", type=Path, help="autoregressive checkpoint for the oracle_teacher row")
    args = parser.parse_args()

    folder = open_prepared(args.prepared)
    sources, references = folder.read_raw(args.split, "src"), folder.read_raw(args.split, "tgt")
    translator = Translator.load(args.nat, data_dir=folder.data_bin)
    model = translator.model
    if translator.kind != "nat":
        raise SystemExit(f"{args.nat} is not a latent transformer checkpoint")
    prior_latents = model.greedy_latents
    rows = {}

    def record(variant: str, hypotheses: list[str]):
        """Score one row's translations, keep and print its BLEU and chrF; returns sacreBLEU's result."""
        result = score(hypotheses, references)
        rows[variant] = {"bleu": result.bleu, "chrf": result.chrf}
        print(f"{variant:>9}: BLEU {result.bleu:.2f}  chrF {result.chrf:.1f}")
        return result

    for variant in VARIANTS:
        generator = torch.Generator().manual_seed(args.seed)

        def latents(enc, enc_pad, num_latents, variant=variant, generator=generator):
            codes = prior_latents(enc, enc_pad, num_latents)
            return replaced_codes(codes, variant, model.cfg.codebook_size, generator)

        model.greedy_latents = latents
        result = record(variant, translator.translate(sources, batch_size=args.batch_size))
    model.greedy_latents = prior_latents
    oracle_targets: dict[str, list[str]] = {}
    if not has_autoencoder(model):
        print("no oracle rows: this checkpoint has no autoencoder (an --inference-only export)")
    else:
        if args.teacher is not None:  # the teacher decodes only when its row can be scored
            teacher = Translator.load(args.teacher, data_dir=folder.data_bin)
            oracle_targets["oracle_teacher"] = teacher.translate(sources, args.batch_size)
        oracle_targets["oracle_reference"] = references
    for variant, targets in oracle_targets.items():
        result = record(variant, decode_with_target_codes(translator, sources, targets, args.batch_size))
    report = {"command": " ".join(sys.argv), "checkpoint": str(args.nat), "split": args.split,
              "bleu_signature": result.bleu_signature, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
