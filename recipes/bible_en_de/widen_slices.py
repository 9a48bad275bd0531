"""Give a trained one-slice latent transformer H codebook slices, translating exactly as before, to train on.

    python recipes/bible_en_de/widen_slices.py IN.pt OUT.pt [--slices 2]
    vqnat train nat ... --codebook-slices 2 --finetune-from-model OUT.pt

A one-slice bottleneck passes log2(K) bits per latent; H slices of K codes pass H log2(K) bits
(``--codebook-slices``, decomposed VQ). Training a wider bottleneck from scratch costs hours on a CPU, so this
script widens a trained model instead, such that the widened one starts from the same translations:

- **Codebook.** Code k of the one-slice codebook is ``e_k = [e_k^1; ...; e_k^H]`` (H pieces of D/H). Slice h of
  the widened codebook gets the pieces ``e_k^h`` as its K codes; the EMA counts are copied to every slice and the
  EMA sums split the same way, so that the M step keeps every code where it is. The code tuple ``(k, ..., k)``
  looks up exactly ``e_k``, and the per-slice nearest code is at least as close to an encoder vector z as the old
  nearest code: ``sum_h min_j ||z^h - e_j^h||^2 <= min_k sum_h ||z^h - e_k^h||^2``.
- **Prior input.** The prior embeds a position's codes as the sum of one embedding per slice. Each slice's table
  is the old table divided by H, so ``(k, ..., k)`` (and the BOS tuple) embed as before.
- **Prior output.** Every slice's logits copy the old ones (weights and bias), so the greedy prior picks
  ``(k*, ..., k*)`` where the old one picked ``k*``.

Hence greedy decoding of the widened model gives the old model's translations (``tests/pipeline/
test_bible_recipe_tools.py`` checks this); training then teaches the slices to differ. The optimizer state and the
recorded training time are dropped (``--finetune-from-model`` resets the optimizer and schedule anyway, and fairseq
would count the old time against ``--stop-time-hours``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.bible_en_de.export_weights import is_inference_only  # noqa: E402

CODEBOOK = "bottleneck.codebook."


def widen_weights(weights: dict[str, torch.Tensor], slices: int, codebook_size: int) -> dict[str, torch.Tensor]:
    """The state dict of a one-slice model -> that of an H-slice model (``slices`` = H) that decodes identically.

    Shapes, with K = ``codebook_size`` and D the model dimension:
    ``embedding, ema_sum [1, K, D] -> [H, K, D/H]``; ``ema_count [1, K] -> [H, K]``;
    ``prior_embed.weight [K + 1, D] -> [H (K + 1), D]``; ``prior_out.weight [K, D] -> [H K, D]``;
    ``prior_out.bias [K] -> [H K]``. Other tensors are returned as they are.
    """
    embedding = weights[CODEBOOK + "embedding"]
    if embedding.shape[0] != 1:
        raise ValueError(f"the model already has {embedding.shape[0]} codebook slices: widen a one-slice model")
    k, dim = embedding.shape[1], embedding.shape[2]
    if k != codebook_size:
        raise ValueError(f"the codebook has {k} codes, the config says {codebook_size}")
    if slices < 2 or dim % slices != 0:
        raise ValueError(f"--slices must be >= 2 and divide the model dimension {dim}, got {slices}")

    def split(t: torch.Tensor) -> torch.Tensor:  # (1, K, D) -> (H, K, D/H): slice h holds the h-th pieces
        return t[0].reshape(k, slices, dim // slices).permute(1, 0, 2).contiguous()

    out = dict(weights)
    out[CODEBOOK + "embedding"] = split(embedding)
    out[CODEBOOK + "ema_sum"] = split(weights[CODEBOOK + "ema_sum"])
    out[CODEBOOK + "ema_count"] = weights[CODEBOOK + "ema_count"].expand(slices, k).clone()
    out["prior_embed.weight"] = (weights["prior_embed.weight"] / slices).repeat(slices, 1)
    out["prior_out.weight"] = weights["prior_out.weight"].repeat(slices, 1)
    out["prior_out.bias"] = weights["prior_out.bias"].repeat(slices)
    return out


def codebook_slices(checkpoint: Path) -> int:
    """H of a latent-transformer checkpoint, read from its codebook's shape ``[H, K, D/H]``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return int(state["model"][CODEBOOK + "embedding"].shape[0])


def widen_checkpoint(source: Path, out: Path, slices: int) -> None:
    """Read a full one-slice checkpoint ``source``, write the widened ``out`` (config says ``codebook_slices``)."""
    state = torch.load(source, map_location="cpu", weights_only=False)
    if "dropped_for_inference" in state:
        raise SystemExit(f"{source} is in chunks' format: run export_weights.py unpack first")
    if is_inference_only(state["model"]):
        raise SystemExit(f"{source} is an inference-only export: make it trainable with warm_start.py first")
    model_cfg = state["cfg"]["model"]
    get = model_cfg.get if isinstance(model_cfg, dict) else lambda key: getattr(model_cfg, key)
    try:
        state["model"] = widen_weights(state["model"], slices, int(get("codebook_size")))
    except ValueError as err:
        raise SystemExit(f"{source}: {err}") from None
    if isinstance(model_cfg, dict):
        model_cfg["codebook_slices"] = slices
    else:
        model_cfg.codebook_slices = slices
    state["last_optimizer_state"] = None
    state.get("extra_state", {})["previous_training_time"] = 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a full one-slice latent-transformer checkpoint")
    parser.add_argument("out", type=Path, help="where to write the widened checkpoint")
    parser.add_argument("--slices", type=int, default=2, help="H, codebook slices of the widened model")
    args = parser.parse_args()
    if not args.source.is_file():
        raise SystemExit(f"{args.source}: no such checkpoint")
    widen_checkpoint(args.source, args.out, args.slices)
    print(f"wrote {args.out}: {args.slices} codebook slices; train it with --codebook-slices {args.slices} "
          f"--finetune-from-model {args.out}")


if __name__ == "__main__":
    main()
