"""Make an inference-only latent-transformer export trainable again, to continue its training elsewhere.

    python recipes/bible_en_de/warm_start.py EXPORT.pt DATA_BIN OUT.pt [--codebook reinit|keep] [--seed 1]
    vqnat train nat ... --finetune-from-model OUT.pt

``export_weights.py --inference-only`` leaves out what translation never uses: the target autoencoder, the
compressor and the codebook's EMA sums (they come back as zeros). Training needs them, so this script

- gives the autoencoder and the compressor a fresh random initialisation (``--seed``), exactly as a new model of
  the same configuration would have; they relearn to map a target onto the codes that the (kept) decoder reads;
- ``--codebook reinit`` (default): empties the codebook's statistics so that it is set again by k-means on the
  first batch of the new autoencoder's outputs, as in a fresh run (the decoder and the prior relearn what each code
  means);
- ``--codebook keep``: keeps the codes and rebuilds the EMA sums from them and the counts,
  ``s_k = e_k * (c_k + eps) / (N + K eps) * N`` with ``N = sum_k c_k`` (the M step's equation solved for ``s_k``),
  so the next EMA step moves each code from where it is. Measured on the Bible NAT: the fresh autoencoder then
  sent its latents to about 15 codes (usage perplexity 36 -> 15 over the first 150 updates), and nothing revives
  the unused ones for thousands of updates (their counts decay slowly from a trained codebook's).

Everything else (source encoder, decoder, embeddings, latent prior, length predictor) keeps its trained weights.
The optimizer state is not in an export: ``--finetune-from-model`` resets the optimizer, the learning-rate schedule,
the meters and the data loader, and a restarted run resumes from its own ``checkpoint_last.pt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vqnat.models.latent_transformer import LatentTransformerModel  # noqa: E402

RELEARNED_PREFIXES = ("autoencoder.", "compress.")


def rebuilt_ema_sum(embedding: torch.Tensor, ema_count: torch.Tensor, eps: float) -> torch.Tensor:
    """EMA sums ``[H, K, Dh]`` that reproduce ``embedding [H, K, Dh]`` from ``ema_count [H, K]`` under the
    Laplace-smoothed M step."""
    total = ema_count.sum(-1, keepdim=True)  # (H, 1)
    k = ema_count.shape[-1]
    smoothed = (ema_count + eps) / (total + k * eps) * total  # (H, K)
    return embedding * smoothed.unsqueeze(-1)


def warm_start(export: Path, data_bin: Path, out: Path, codebook: str = "reinit", seed: int = 1) -> int:
    """Write a trainable checkpoint ``out`` from an inference-only ``export``; returns how many tensors of the
    autoencoder and the compressor were re-initialised."""
    if codebook not in ("reinit", "keep"):
        raise ValueError(f"codebook must be 'reinit' or 'keep', got {codebook!r}")
    from fairseq.data import Dictionary

    state = torch.load(export, map_location="cpu", weights_only=False)
    if "dropped_for_inference" in state:
        raise SystemExit(f"{export} is still in chunks' format: run export_weights.py unpack first")
    model_args = state["cfg"]["model"]
    if isinstance(model_args, dict):  # saved as a plain dict; build_model reads attributes
        model_args = argparse.Namespace(**model_args)
    dictionary = Dictionary.load(str(next(data_bin.glob("dict.*.txt"))))
    torch.manual_seed(seed)
    model = LatentTransformerModel.build_model(
        model_args, SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary))
    cfg, fresh = model.cfg, model.state_dict()
    weights = state["model"]
    relearned = 0
    for key in weights:
        if key.startswith(RELEARNED_PREFIXES):
            if fresh[key].shape != weights[key].shape:
                raise SystemExit(f"{key}: shape {tuple(weights[key].shape)} in the export, "
                                 f"{tuple(fresh[key].shape)} in a fresh model: wrong data-bin or config?")
            weights[key] = fresh[key].clone()
            relearned += 1
    prefix = "bottleneck.codebook."
    if codebook == "keep":
        weights[prefix + "ema_sum"] = rebuilt_ema_sum(weights[prefix + "embedding"].float(),
                                                      weights[prefix + "ema_count"].float(), cfg.codebook_eps)
    else:
        for name in ("embedding", "ema_count", "ema_sum", "num_updates"):
            weights[prefix + name] = fresh[prefix + name].clone()
        weights[prefix + "initialized"] = torch.tensor(cfg.no_kmeans_init)  # False: k-means on the first batch
    state["last_optimizer_state"] = None
    state["extra_state"] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return relearned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="an unpacked --inference-only export (export_weights.py unpack)")
    parser.add_argument("data_bin", type=Path, help="the data-bin the model was trained on (for its dictionary)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--codebook", choices=("reinit", "keep"), default="reinit")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count = warm_start(args.export, args.data_bin, args.out, args.codebook, args.seed)
    print(f"wrote {args.out}: {count} autoencoder/compressor tensors re-initialised, codebook: {args.codebook}")


if __name__ == "__main__":
    main()
