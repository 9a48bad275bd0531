"""Tile uint8 images into one grid and write it as a PNG (Pillow, which matplotlib already depends on)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image


def make_grid(images: np.ndarray, columns: int | None = None, padding: int = 2, fill: int = 255) -> np.ndarray:
    """``uint8 [N, C, H, W]`` (C = 1 or 3) -> one image ``[rows*(H+p)+p, cols*(W+p)+p]`` (grey) or ``[..., 3]``."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"images must be a non-empty uint8 array [N, 1 or 3, H, W], got {images.dtype} "
                         f"{images.shape}")
    n, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), fill, dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[top:top + h, left:left + w] = image.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    return grid[..., 0] if c == 1 else grid


def interleave_rows(top: np.ndarray, bottom: np.ndarray, columns: int) -> np.ndarray:
    """``[N, ...]`` twice -> ``[2N', ...]``: each row of ``columns`` originals followed by their reconstructions
    (the last row is padded with white images); :func:`make_grid` with ``columns`` lays it out."""
    n = len(top)
    pad = (-n) % columns
    if pad:
        blank = np.full((pad, *top.shape[1:]), 255, dtype=top.dtype)
        top, bottom = np.concatenate([top, blank]), np.concatenate([bottom, blank])
    rows = [part[i:i + columns] for i in range(0, len(top), columns) for part in (top, bottom)]
    return np.concatenate(rows)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write ``uint8 [H, W]`` or ``[H, W, 3]`` as a PNG (creating parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, optimize=True)
    return path


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as ``uint8 [C, H, W]`` (C = 1 for greyscale, 3 for colour; alpha dropped)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("L" if image.mode in ("L", "I", "1") else "RGB"))
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (H, W[, 3]) -> (C, H, W)
