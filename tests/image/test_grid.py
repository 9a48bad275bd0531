"""PNG grids: layout, exact round trip, and the originals-over-reconstructions interleaving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vqnat.data.image_grid import interleave_rows, make_grid, read_png, save_png


def test_grid_layout_and_exact_png_round_trip(tmp_path: Path, cifar10_real) -> None:
    images = cifar10_real[0][:5]  # (5, 3, 32, 32)
    grid = make_grid(images, columns=3, padding=2)
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3)
    np.testing.assert_array_equal(grid[2:34, 36:68], images[1].transpose(1, 2, 0))
    path = save_png(grid, tmp_path / "sub" / "grid.png")
    np.testing.assert_array_equal(read_png(path), grid.transpose(2, 0, 1))
    grey = make_grid(np.zeros((4, 1, 28, 28), np.uint8))
    assert grey.shape == (62, 62)
    with pytest.raises(ValueError, match="uint8"):
        make_grid(np.zeros((4, 2, 28, 28), np.uint8))


def test_interleave_rows_puts_reconstructions_under_originals() -> None:
    top = np.arange(5).reshape(5, 1, 1, 1).astype(np.uint8)
    bottom = top + 100
    rows = interleave_rows(top, bottom, columns=3)[:, 0, 0, 0].tolist()
    assert rows == [0, 1, 2, 100, 101, 102, 3, 4, 255, 103, 104, 255]
