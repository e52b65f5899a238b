"""CIFAR-10 (paper 2, Sec. 4) on ``torchvision.datasets.CIFAR10``.

Files: torchvision's layout, ``root/cifar-10-batches-py/`` with ``data_batch_1`` ..
``data_batch_5``, ``test_batch`` and ``batches.meta`` (pickled dicts with ``data``, an
(N, 3072) uint8 array of CHW rows, and ``labels``). torchvision checks each file's md5 sum;
``verify_md5: false`` skips that check (with a warning) for a re-packed copy.

Training augmentation (paper 2, appendix C: random horizontal flip and a random 32x32 crop of
the image reflect-padded by 4) runs on the batch on its device, vectorised, one draw per image.
"""
from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.datasets import CIFAR10

from datamodules.base import ImageDataModule, TensorDictDataset
from splitlab.errors import ConfigError, DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class _CIFAR10NoMD5(CIFAR10):
    """torchvision's CIFAR10 with the md5 checks replaced by existence checks."""

    def _check_integrity(self) -> bool:
        base = os.path.join(self.root, self.base_folder)
        return all(os.path.isfile(os.path.join(base, f)) for f, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        try:
            super()._load_meta()
        except RuntimeError:
            self.classes = [str(i) for i in range(10)]


def flip_and_crop(x: Tensor, pad: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Random horizontal flip and random crop of the reflect-padded image, per image.

    x: (B, C, H, W) -> (B, C, H, W). No loop over images: one gather.
    """
    b, c, h, w = x.shape
    dev = x.device
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
    rows = (oy.view(b, 1) + torch.arange(h, device=dev)).view(b, 1, h, 1)
    cols = (ox.view(b, 1) + torch.arange(w, device=dev)).view(b, 1, 1, w)
    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    ci = torch.arange(c, device=dev).view(1, c, 1, 1)
    return xp[bi, ci, rows, cols]


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 32x32. ``val`` is a held-out slice of the training split (``val_size``) or,
    with ``val_size: 0`` (the paper trains on all 50k), the test split.

    Args:
        root: folder holding ``cifar-10-batches-py/``.
        download: fetch the archive if missing (needs the internet).
        verify_md5: check the files' md5 sums (off for your own re-packed copy).
        val_size: training images held out for validation (0: validate on test).
        augment: random flip + reflect-pad-4 crop of training batches (paper 2, appendix C).
    """

    shape = (3, 32, 32)
    num_classes = 10

    def __init__(
        self,
        root: str = "data/cifar10",
        download: bool = False,
        verify_md5: bool = True,
        val_size: int = 0,
        augment: bool = True,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, on_device, seed)
        if val_size < 0:
            raise ConfigError(f"val_size must be >= 0, got {val_size}; set `data.init_args.val_size`.")
        self.download, self.verify_md5, self.val_size, self.augment = download, verify_md5, val_size, augment

    def prepare_data(self) -> None:
        if self.download:
            try:
                CIFAR10(self.root, train=True, download=True)
            except Exception as e:  # network errors
                raise DataError(
                    f"Downloading CIFAR-10 into {os.path.abspath(self.root)} failed ({e}). Download {URL} by hand, "
                    f"extract it there (giving cifar-10-batches-py/) and set `data.init_args.download: false`."
                ) from e

    def _load(self, train: bool) -> tuple[Tensor, Tensor]:
        folder = os.path.join(self.root, "cifar-10-batches-py")
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
        if missing:
            raise DataError(
                f"CIFAR-10 files {missing} are missing in {os.path.abspath(folder)}. Extract {URL} into "
                f"{os.path.abspath(self.root)}, or set `data.init_args.download: true` on a machine with internet, "
                "or point `data.init_args.root` at the folder that holds cifar-10-batches-py/."
            )
        cls = CIFAR10
        if not self.verify_md5:
            warnings.warn(f"CIFAR-10: md5 check of {folder} skipped (verify_md5: false).", stacklevel=2)
            cls = _CIFAR10NoMD5
        try:
            ds = cls(self.root, train=train, download=False)
        except RuntimeError as e:
            raise DataError(
                f"CIFAR-10 files in {os.path.abspath(folder)} failed torchvision's md5 check (corrupted or re-packed). "
                f"Download {URL} again, or, for your own re-packed copy, set `data.init_args.verify_md5: false`."
            ) from e
        except Exception as e:  # a truncated pickle
            raise DataError(
                f"CIFAR-10 files in {os.path.abspath(folder)} could not be read ({type(e).__name__}: {e}); a file is "
                f"truncated or not a CIFAR-10 pickle. Delete the folder and extract {URL} again."
            ) from e
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # torchvision keeps NHWC
        return images, torch.as_tensor(ds.targets, dtype=torch.long)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, labels = self._load(train=True)
        test = TensorDictDataset(*self._load(train=False))
        if self.val_size >= len(images):
            raise ConfigError(f"val_size={self.val_size} leaves no training images (train has {len(images)}).")
        if self.val_size:
            perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            val, train = perm[: self.val_size], perm[self.val_size :]
            self.splits["train"] = TensorDictDataset(images[train], labels[train])
            self.splits["val"] = TensorDictDataset(images[val], labels[val])
        else:
            self.splits["train"] = TensorDictDataset(images, labels)
            self.splits["val"] = test
        self.splits["test"] = test

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.augment and self.trainer is not None and self.trainer.training:
            batch["image"] = flip_and_crop(batch["image"])
        return batch
