"""SVHN (paper 1, Sec. 4.1) on ``torchvision.datasets.SVHN``.

Files (cropped digits, format 2): ``train_32x32.mat``, ``test_32x32.mat`` (and optionally
``extra_32x32.mat``) directly inside ``root``. torchvision checks each file's md5 sum;
``verify_md5: false`` skips that check (with a warning) for a re-packed copy.
"""
from __future__ import annotations

import os
import warnings

import torch
from torchvision.datasets import SVHN

from datamodules.base import ImageDataModule, TensorDictDataset
from splitlab.errors import ConfigError, DataError

URL = "http://ufldl.stanford.edu/housenumbers/"


class _SVHNNoMD5(SVHN):
    """torchvision's SVHN with the md5 check replaced by an existence check."""

    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


class SVHNDataModule(ImageDataModule):
    """SVHN 32x32 digits. Validation is a held-out slice of the training split; test is SVHN's test split.

    Args:
        root: folder holding the ``*_32x32.mat`` files.
        download: fetch the files if missing (needs the internet).
        verify_md5: check the files' md5 sums (off for your own re-packed copy).
        val_size: training images held out for validation.
        use_extra: add the 531k ``extra`` images to the training split.
    """

    shape = (3, 32, 32)
    num_classes = 10

    def __init__(
        self,
        root: str = "data/svhn",
        download: bool = False,
        verify_md5: bool = True,
        val_size: int = 5000,
        use_extra: bool = False,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, on_device, seed)
        if val_size < 0:
            raise ConfigError(f"val_size must be >= 0, got {val_size}; set `data.init_args.val_size`.")
        self.download, self.verify_md5, self.val_size, self.use_extra = download, verify_md5, val_size, use_extra

    def _splits_needed(self) -> list[str]:
        return ["train", "test"] + (["extra"] if self.use_extra else [])

    def prepare_data(self) -> None:
        if self.download:
            for split in self._splits_needed():
                try:
                    SVHN(self.root, split=split, download=True)
                except Exception as e:  # network errors, quota, ...
                    raise DataError(
                        f"Downloading SVHN '{split}' into {os.path.abspath(self.root)} failed ({e}). Download "
                        f"{URL}{split}_32x32.mat by hand, put it in that folder and set `data.init_args.download: false`."
                    ) from e

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        fname = f"{split}_32x32.mat"
        path = os.path.join(self.root, fname)
        if not os.path.isfile(path):
            raise DataError(
                f"SVHN file {os.path.abspath(path)} is missing. Put SVHN's {fname} (from {URL}{fname}) in "
                f"{os.path.abspath(self.root)}, or set `data.init_args.download: true` on a machine with "
                "internet, or point `data.init_args.root` at the folder that holds it."
            )
        cls = SVHN
        if not self.verify_md5:
            warnings.warn(f"SVHN: md5 check of {path} skipped (verify_md5: false).", stacklevel=2)
            cls = _SVHNNoMD5
        try:
            ds = cls(self.root, split=split, download=False)
        except RuntimeError as e:
            raise DataError(
                f"SVHN file {os.path.abspath(path)} failed torchvision's md5 check (corrupted or re-packed). "
                f"Download {URL}{fname} again, or, if it is your own re-packed copy, set "
                "`data.init_args.verify_md5: false`."
            ) from e
        except Exception as e:  # scipy.io.loadmat on a truncated / non-mat file
            raise DataError(
                f"SVHN file {os.path.abspath(path)} could not be read ({type(e).__name__}: {e}); it is truncated "
                f"or not a MATLAB file. Delete it and download {URL}{fname} again."
            ) from e
        return torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels).long()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, labels = self._load("train")
        if self.use_extra:
            ex_i, ex_l = self._load("extra")
            images, labels = torch.cat([images, ex_i]), torch.cat([labels, ex_l])
        if self.val_size >= len(images):
            raise ConfigError(f"val_size={self.val_size} leaves no training images (train has {len(images)}).")
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        val, train = perm[: self.val_size], perm[self.val_size :]
        self.splits["train"] = TensorDictDataset(images[train], labels[train])
        self.splits["val"] = TensorDictDataset(images[val], labels[val])
        self.splits["test"] = TensorDictDataset(*self._load("test"))
