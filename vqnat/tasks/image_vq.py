"""fairseq task ``vqnat_image``: 8-bit image datasets (Fashion-MNIST, MNIST, CIFAR-10) for the image VQ-VAE.

``fairseq-train DATA --user-dir vqnat --task vqnat_image --dataset fashion-mnist ...`` where DATA is the folder
that holds the dataset's files: ``make install`` puts Fashion-MNIST in ``.venv/share/datasets/fashion-mnist`` and
MNIST in ``.venv/lib/python3.11/site-packages/mnist/data`` (``vqnat image train`` finds them by itself).
Splits: ``train``, ``valid``, ``test`` (see :mod:`vqnat.data.images`). A batch is
``{"id": [B], "nsentences": B, "ntokens": B*C*H*W, "net_input": {"images": uint8 [B, C, H, W]}}``.
"""

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq.data import FairseqDataset
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task

from vqnat.data.images import DATASETS, IMAGE_SHAPES, load_image_dataset

logger = logging.getLogger(__name__)


class ImageDataset(FairseqDataset):
    """uint8 images ``[N, C, H, W]`` as a fairseq dataset; ``shuffle`` draws a new order every epoch."""

    def __init__(self, images: np.ndarray, shuffle: bool) -> None:
        super().__init__()
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.shuffle = shuffle
        self.subpixels = int(np.prod(images.shape[1:]))

    def __getitem__(self, index: int) -> dict:
        return {"id": index, "image": self.images[index]}

    def __len__(self) -> int:
        return len(self.images)

    def collater(self, samples: list[dict]) -> dict:
        if not samples:
            return {}
        images = torch.stack([s["image"] for s in samples])  # (B, C, H, W)
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": len(samples) * self.subpixels,
            "net_input": {"images": images},
        }

    def num_tokens(self, index: int) -> int:
        return self.subpixels

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return np.full(len(indices), self.subpixels, dtype=np.int64)

    def size(self, index: int) -> int:
        return self.subpixels

    def ordered_indices(self) -> np.ndarray:
        # fairseq calls this under numpy_seed(seed + epoch): a reproducible new order per epoch.
        return np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))

    @property
    def supports_prefetch(self) -> bool:
        return False


@dataclass
class ImageVQTaskConfig(FairseqDataclass):
    # Optional[...] rather than "str | None": fairseq's argparse bridge only understands the former.
    data: Optional[str] = field(default=None, metadata={  # noqa: UP045
        "help": "folder with the dataset files (Fashion-MNIST: .venv/share/datasets/fashion-mnist); "
                "CIFAR-10 needs a cifar-10-batches-py folder"})
    dataset: ChoiceEnum(list(DATASETS)) = field(default="fashion-mnist", metadata={"help": "which image dataset"})
    max_train_images: int = field(default=0, metadata={"help": "use only the first N training images (0 = all)"})
    max_eval_images: int = field(
        default=0, metadata={"help": "use only the first N images of valid/test (0 = all)"})
    rebuild_batches: bool = field(default=True, metadata={"help": "draw new random batches every epoch"})


@register_task("vqnat_image", dataclass=ImageVQTaskConfig)
class ImageVQTask(FairseqTask):
    """Loads one image dataset; the model reads :attr:`image_shape` ``(C, H, W)`` from here."""

    cfg: ImageVQTaskConfig

    def __init__(self, cfg: ImageVQTaskConfig) -> None:
        super().__init__(cfg)
        self.image_shape: tuple[int, int, int] = IMAGE_SHAPES[str(cfg.dataset)]
        self._splits = None

    @classmethod
    def setup_task(cls, cfg: ImageVQTaskConfig, **kwargs) -> "ImageVQTask":
        return cls(cfg)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        if self._splits is None:
            self._splits = load_image_dataset(str(self.cfg.dataset), self.cfg.data or None)
        images = self._splits.split(split)
        limit = self.cfg.max_train_images if split == "train" else self.cfg.max_eval_images
        if limit > 0:
            images = images[:limit]
        logger.info("%s %s: %d images of shape %s", self.cfg.dataset, split, len(images), images.shape[1:])
        self.datasets[split] = ImageDataset(images, shuffle=(split == "train"))

    def max_positions(self) -> None:
        return None

    @property
    def source_dictionary(self) -> None:
        return None

    @property
    def target_dictionary(self) -> None:
        return None
