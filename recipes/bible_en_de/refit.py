"""Refit a trained NAT's prior, then its decoder on the prior's own codes, with the source encoder frozen.

    python recipes/bible_en_de/refit.py NAT.pt PREPARED OUT.pt [--prior-epochs 8] [--decoder-epochs 2]

Why: the NAT's decoder is trained on the codes its autoencoder gives a target, but at inference it reads the
prior's greedy codes, which differ (``latent_ablation.py``: prior 15.37 vs 17.21 BLEU with the teacher's codes).
Both fixes below leave inference untouched (same layers, same steps), so the speed stays as it was.

1. **Cache** (eval mode, once): for every training batch the source encoding ``enc [B, S, D]`` and the codes
   ``c [B, L, H]`` the autoencoder assigns to the (distilled) target, nearest code per latent.
2. **Prior** (``--prior-epochs``): only the prior's weights train, on the cached tensors:
   ``min CE_ls(p(c_l | c_<l, enc), c_l)`` over real latents. Each step costs a 2-layer pass over ``L = T'/8``
   positions instead of the full model, so an epoch takes a minute or two on the CPU.
3. **Decoder** (``--decoder-epochs``): the prior's greedy codes ``ĉ`` for each cached batch (recomputed each epoch,
   prior in eval mode), then only the decompressor and decoder stack train:
   ``min CE_ls(decoder(e[ĉ], enc), y)``. The decoder learns to translate from the codes it will actually get.
   Embeddings (shared with the encoder), codebook and prior stay frozen, so the cached encodings stay exact.

After every epoch the valid split (Mark) is translated; the weights with the best valid BLEU are kept and written
to ``OUT.pt``, a full fairseq checkpoint (``vqnat translate``/``bench``, or ``--finetune-from-model``). A JSON
report with every epoch's figures goes next to it (``OUT.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.bible_en_de.export_weights import is_inference_only  # noqa: E402
from vqnat.criterions.latent_transformer_loss import smoothed_cross_entropy  # noqa: E402
from vqnat.inference import Translator  # noqa: E402
from vqnat.pipeline.evaluate import score  # noqa: E402
from vqnat.pipeline.prepared import open_prepared  # noqa: E402


@dataclass
class CachedBatch:
    """One training batch with everything the refit needs and nothing that changes during it."""

    enc: Tensor  # (B, S, D) source encoding
    enc_pad: Tensor  # (B, S) True at padding
    codes: Tensor  # (B, L, H) autoencoder's nearest codes for the target
    latent_mask: Tensor  # (B, L) True at real latents
    lengths: Tensor  # (B,) T'_b, multiples of 2^nc
    targets: Tensor  # (B, T') EOS-terminated, padded
    token_mask: Tensor  # (B, T') True at real positions


def label_smoothed_nll(logits: Tensor, targets: Tensor, mask: Tensor, smoothing: float) -> Tensor:
    """The training criterion's label-smoothed cross-entropy ``[..., V], [...]``, averaged over ``mask``."""
    return smoothed_cross_entropy(logits, targets, smoothing)[mask].mean()


def text_pairs_dataset(translator: Translator, sources: list[str], targets: list[str]):
    """Raw text pairs (e.g. extra sources and the teacher's translations of them) -> a fairseq
    ``LanguagePairDataset`` tokenized and indexed as the NAT's own data (joint sentencepiece, its dictionaries)."""
    from fairseq.data import LanguagePairDataset

    if len(sources) != len(targets):
        raise SystemExit(f"{len(sources)} extra sources but {len(targets)} extra targets: one per line in both")
    src = [translator.encode(text) for text in sources]
    tgt_dict = translator.tgt_dict
    tgt = [torch.tensor([tgt_dict.index(w) for w in translator.tokenizer.encode(text).split()] + [tgt_dict.eos()])
           for text in targets]
    return LanguagePairDataset(src, [len(t) for t in src], translator.src_dict, tgt, [len(t) for t in tgt], tgt_dict,
                               left_pad_source=getattr(translator.task.cfg, "left_pad_source", True),
                               left_pad_target=False)


@torch.no_grad()
def cache_batches(model, task, dataset, max_tokens: int, seed: int) -> list[CachedBatch]:
    """Run the frozen encoder and autoencoder (eval mode) over ``dataset`` once, in fairseq's length-bucketed
    batches of at most ``max_tokens``."""
    iterator = task.get_batch_iterator(dataset, max_tokens=max_tokens, seed=seed, ignore_invalid_inputs=True)
    model.eval()
    batches = []
    for sample in iterator.next_epoch_itr(shuffle=False):
        net = sample["net_input"]
        enc, enc_pad = model.encode(net["src_tokens"])
        out = model.autoencode(net["src_lengths"], sample["target"], enc, enc_pad)
        batches.append(CachedBatch(enc=enc, enc_pad=enc_pad, codes=out.vq.codes, latent_mask=out.latent_mask,
                                   lengths=out.lengths, targets=out.targets, token_mask=out.token_mask))
    return batches


def prior_parameters(model) -> list[Tensor]:
    return [*model.prior_embed.parameters(), *model.prior.parameters(), *model.prior_out.parameters()]


def decoder_parameters(model) -> list[Tensor]:
    return [*model.decompress.parameters(), *model.decoder.parameters()]


def train_mode(model, modules: list[torch.nn.Module]) -> None:
    """Everything in eval mode (no dropout in the frozen parts) except ``modules``."""
    model.eval()
    for module in modules:
        module.train()


def prior_step(model, batch: CachedBatch, smoothing: float) -> tuple[Tensor, float]:
    """Teacher-forced prior loss on one cached batch; also the argmax accuracy on its real latents."""
    logits = model.prior_logits(batch.codes, batch.enc, batch.enc_pad)  # (B, L, H, K)
    mask = batch.latent_mask.unsqueeze(-1).expand_as(batch.codes)  # (B, L, H)
    accuracy = logits.argmax(-1).eq(batch.codes)[mask].float().mean().item()
    return label_smoothed_nll(logits, batch.codes, mask, smoothing), accuracy


def decoder_step(model, batch: CachedBatch, codes: Tensor, smoothing: float) -> tuple[Tensor, float]:
    """Decoder loss when it reads ``codes [B, L, H]`` (the prior's); also its token accuracy."""
    logits = model.decode(model.code_latents(codes), batch.lengths, batch.enc, batch.enc_pad)  # (B, T', V)
    accuracy = logits.argmax(-1).eq(batch.targets)[batch.token_mask].float().mean().item()
    return label_smoothed_nll(logits, batch.targets, batch.token_mask, smoothing), accuracy


@torch.no_grad()
def prior_codes(model, batch: CachedBatch) -> Tensor:
    """The prior's greedy codes for a cached batch ``[B, L, H]``: what inference would read (in the decoder stage
    :func:`train_mode` leaves the prior in eval mode)."""
    return model.greedy_latents(batch.enc, batch.enc_pad, batch.codes.shape[1])


def run_stage(name: str, model, batches: list[CachedBatch], epochs: int, lr: float, smoothing: float,
              seed: int, evaluate, log: list[dict]) -> dict[str, Tensor]:
    """Train one stage (``prior`` or ``decoder``) for ``epochs`` epochs with Adam and a linear warm-up of one
    tenth of the first epoch. ``evaluate()`` returns ``{"valid_bleu": ..., other figures to log}``; the state dict
    with the best ``valid_bleu`` is returned, the start's included."""
    if name == "prior":
        params, modules = prior_parameters(model), [model.prior, model.prior_dropout]
    else:
        params, modules = decoder_parameters(model), [model.decompress, model.decoder, model.dropout]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.98), eps=1e-8)
    warmup = max(1, len(batches) // 10)
    scores = evaluate()
    best_bleu, best_state = scores["valid_bleu"], copy.deepcopy(model.state_dict())
    log.append({"stage": name, "epoch": 0, **scores})
    print(f"{name} epoch 0: {_figures(scores)}", flush=True)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(1, epochs + 1):
        start, losses, accuracies = time.time(), [], []
        for index in torch.randperm(len(batches), generator=generator).tolist():
            batch = batches[index]
            train_mode(model, modules)
            if name == "prior":
                loss, accuracy = prior_step(model, batch, smoothing)
            else:
                loss, accuracy = decoder_step(model, batch, prior_codes(model, batch), smoothing)
            step += 1
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, step / warmup)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss.item())
            accuracies.append(accuracy)
        model.eval()
        seconds = round(time.time() - start, 1)
        scores = evaluate()
        row = {"stage": name, "epoch": epoch, "train_loss": round(sum(losses) / len(losses), 4),
               "train_accuracy": round(sum(accuracies) / len(accuracies), 4), **scores, "seconds": seconds}
        log.append(row)
        print(f"{name} epoch {epoch}: loss {row['train_loss']:.3f}  accuracy {row['train_accuracy']:.3f}  "
              f"{_figures(scores)}  ({seconds:.0f} s)", flush=True)
        if scores["valid_bleu"] > best_bleu:
            best_bleu, best_state = scores["valid_bleu"], copy.deepcopy(model.state_dict())
    for p in model.parameters():
        p.requires_grad_(True)
    return best_state


def _figures(scores: dict[str, float]) -> str:
    return "  ".join(f"{name.replace('_bleu', '')} BLEU {value:.2f}" for name, value in scores.items())


def save_checkpoint(source: Path, out: Path, weights: dict[str, Tensor], report: dict) -> None:
    """``source``'s checkpoint with ``weights`` in place of its model; optimizer state dropped."""
    state = torch.load(source, map_location="cpu", weights_only=False)
    state["model"] = {name: tensor.clone() for name, tensor in weights.items()}
    state["last_optimizer_state"] = None
    state.setdefault("extra_state", {})["vqnat_refit"] = report
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nat", type=Path, help="a full latent-transformer checkpoint (not an inference-only export)")
    parser.add_argument("prepared", type=Path, help="the `vqnat prepare`/`vqnat distill` folder it was trained on")
    parser.add_argument("out", type=Path, help="where to write the refit checkpoint (a report goes to OUT.json)")
    parser.add_argument("--prior-epochs", type=int, default=8)
    parser.add_argument("--decoder-epochs", type=int, default=2)
    parser.add_argument("--prior-lr", type=float, default=3e-4)
    parser.add_argument("--decoder-lr", type=float, default=1e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--extra", type=Path, nargs=2, metavar=("SOURCES", "TARGETS"),
                        help="extra training pairs, raw text one per line (e.g. more sources and the teacher's "
                             "translations of them: more distillation data for the prior and decoder)")
    parser.add_argument("--valid-split", default="valid", help="the split that selects the weights")
    parser.add_argument("--report-split", default=None,
                        help="also score this split after every epoch, for the report only (e.g. test)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if not args.nat.is_file():
        raise SystemExit(f"{args.nat}: no such checkpoint")
    folder = open_prepared(args.prepared)
    try:
        translator = Translator.load(args.nat, data_dir=folder.data_bin)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    model = translator.model
    if translator.kind != "nat":
        raise SystemExit(f"{args.nat} is not a latent transformer checkpoint")
    if is_inference_only(model.state_dict()):
        raise SystemExit(f"{args.nat} is an inference-only export: the refit needs its autoencoder")
    splits = {"valid_bleu": args.valid_split, **({"report_bleu": args.report_split} if args.report_split else {})}
    texts = {key: (folder.read_raw(split, "src"), folder.read_raw(split, "tgt")) for key, split in splits.items()}

    def evaluate() -> dict[str, float]:
        model.eval()
        return {key: round(score(translator.translate(sources, batch_size=128), references).bleu, 2)
                for key, (sources, references) in texts.items()}

    start = time.time()
    translator.task.load_dataset("train")
    batches = cache_batches(model, translator.task, translator.task.dataset("train"), args.max_tokens, args.seed)
    if args.extra:
        extra_sources, extra_targets = (path.read_text(encoding="utf-8").splitlines() for path in args.extra)
        extra = text_pairs_dataset(translator, extra_sources, extra_targets)
        batches += cache_batches(model, translator.task, extra,
                                 args.max_tokens, args.seed)
    print(f"cached {len(batches)} batches in {time.time() - start:.0f} s", flush=True)
    log: list[dict] = []
    if args.prior_epochs > 0:
        model.load_state_dict(run_stage("prior", model, batches, args.prior_epochs, args.prior_lr,
                                        args.label_smoothing, args.seed, evaluate, log))
    if args.decoder_epochs > 0:
        model.load_state_dict(run_stage("decoder", model, batches, args.decoder_epochs, args.decoder_lr,
                                        args.label_smoothing, args.seed, evaluate, log))
    report = {"command": " ".join(sys.argv), "checkpoint": str(args.nat), "valid_split": args.valid_split,
              "report_split": args.report_split,
              "threads": args.threads, "minutes": round((time.time() - start) / 60, 1), "epochs": log,
              "valid_bleu": max(row["valid_bleu"] for row in log) if log else math.nan}
    save_checkpoint(args.nat, args.out, model.state_dict(), report)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} (valid BLEU {report['valid_bleu']:.2f}) and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
