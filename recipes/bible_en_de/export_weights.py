"""Shrink fairseq checkpoints for transport: drop optimizer state, store floating tensors as fp16 (tied weights
once), optionally leave out what only training needs, split into chunks; and join them back into a loadable fp32
checkpoint.

    python recipes/bible_en_de/export_weights.py pack CKPT OUT_PREFIX [--chunk-mb 15] [--inference-only]
    python recipes/bible_en_de/export_weights.py unpack OUT_PREFIX CKPT

``--inference-only`` (latent transformer): the target autoencoder, the compressor and the codebook's EMA sums are
not used by translation; they are stored as shapes and come back as zeros, so the unpacked checkpoint translates
exactly as the original but cannot resume training.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import torch

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # our own checkpoints, see vqnat/checkpoint.py


TRAINING_ONLY_PREFIXES = ("autoencoder.", "compress.", "bottleneck.codebook.ema_sum")


def is_inference_only(weights: dict[str, torch.Tensor]) -> bool:
    """True for the weights of an unpacked ``--inference-only`` export: ``unpack`` gives the left-out tensors back
    as zeros, so an autoencoder weight matrix is all zeros (a trained or freshly initialised one never is)."""
    return any(k.startswith("autoencoder.") and v.dim() > 1 and not v.any() for k, v in weights.items())


def _convert(weights: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Cast floating tensors to ``dtype``; tied weights are stored once. Tensors that share storage stay shared,
    and so do equal copies: a checkpoint saved from a GPU holds a separate copy of each tied embedding (fairseq
    moves the state to the CPU tensor by tensor), three of them with shared source, target and output embeddings."""
    done: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
    by_shape: dict[tuple[tuple[int, ...], torch.dtype], list[torch.Tensor]] = {}
    out = {}
    for key, value in weights.items():
        if value.is_floating_point():
            tag = (value.data_ptr(), tuple(value.shape))
            if tag not in done:
                converted = value.to(dtype)
                same = by_shape.setdefault((tuple(value.shape), dtype), [])
                done[tag] = next((t for t in same if torch.equal(t, converted)), converted)
                if done[tag] is converted:
                    same.append(converted)
            value = done[tag]
        out[key] = value
    return out


def pack(checkpoint: Path, prefix: Path, chunk_mb: int, inference_only: bool = False) -> list[Path]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["last_optimizer_state"] = None
    weights = state["model"]
    if inference_only:
        dropped = {k: v for k, v in weights.items() if k.startswith(TRAINING_ONLY_PREFIXES)}
        state["dropped_for_inference"] = {k: (tuple(v.shape), v.dtype) for k, v in dropped.items()}
        weights = {k: v for k, v in weights.items() if k not in dropped}
    state["model"] = _convert(weights, torch.float16)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    size = chunk_mb * 1024 * 1024
    paths = []
    for i in range(0, len(data), size):
        path = prefix.with_name(f"{prefix.name}.part{i // size}")
        path.write_bytes(data[i : i + size])
        paths.append(path)
    return paths


def unpack(prefix: Path, checkpoint: Path) -> None:
    parts = sorted(prefix.parent.glob(f"{prefix.name}.part*"), key=lambda p: int(p.suffix[5:]))
    if not parts:
        raise SystemExit(f"no {prefix}.part* files")
    state = torch.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)), map_location="cpu", weights_only=False)
    weights = _convert(state["model"], torch.float32)
    for key, (shape, dtype) in state.pop("dropped_for_inference", {}).items():
        weights[key] = torch.zeros(shape, dtype=dtype)
    state["model"] = weights
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("prefix", type=Path)
    p.add_argument("--chunk-mb", type=int, default=15)
    p.add_argument("--inference-only", action="store_true", help="leave out what only training needs")
    u = sub.add_parser("unpack")
    u.add_argument("prefix", type=Path)
    u.add_argument("checkpoint", type=Path)
    args = parser.parse_args()
    if args.cmd == "pack":
        for path in pack(args.checkpoint, args.prefix, args.chunk_mb, args.inference_only):
            print(path, path.stat().st_size)
    else:
        unpack(args.prefix, args.checkpoint)


if __name__ == "__main__":
    main()
