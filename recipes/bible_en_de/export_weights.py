"""Shrink fairseq checkpoints for transport: drop optimizer state, store floating tensors as fp16, split into
chunks; and join them back into a loadable fp32 checkpoint.

    python recipes/bible_en_de/export_weights.py pack CKPT OUT_PREFIX [--chunk-mb 15]
    python recipes/bible_en_de/export_weights.py unpack OUT_PREFIX CKPT
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import torch

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # our own checkpoints, see vqnat/checkpoint.py


def pack(checkpoint: Path, prefix: Path, chunk_mb: int) -> list[Path]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["last_optimizer_state"] = None
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
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
    state["model"] = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("prefix", type=Path)
    p.add_argument("--chunk-mb", type=int, default=15)
    u = sub.add_parser("unpack")
    u.add_argument("prefix", type=Path)
    u.add_argument("checkpoint", type=Path)
    args = parser.parse_args()
    if args.cmd == "pack":
        for path in pack(args.checkpoint, args.prefix, args.chunk_mb):
            print(path, path.stat().st_size)
    else:
        unpack(args.prefix, args.checkpoint)


if __name__ == "__main__":
    main()
