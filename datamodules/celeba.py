"""CelebA (paper 1, Sec. 4.1) on ``torchvision.datasets.CelebA``, cropped and resized to 64x64.

Layout under ``root`` (torchvision's)::

    root/celeba/img_align_celeba/000001.jpg ...
    root/celeba/list_eval_partition.txt  list_attr_celeba.txt  identity_CelebA.txt
    root/celeba/list_bbox_celeba.txt     list_landmarks_align_celeba.txt

The aligned 178x218 faces are centre-cropped to 148x148 and resized to 64x64 (the usual
"cropped CelebA" of the VAE literature, which the paper follows). Batches carry ``label`` =
one binary attribute (default ``Male``: the paper's clusters split by gender).
"""
from __future__ import annotations

import os
import warnings

import torch
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import CelebA

from datamodules.base import ImageDataModule
from splitlab.errors import ConfigError, DataError

FILES = ["list_eval_partition.txt", "list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
         "list_landmarks_align_celeba.txt"]
WHERE = ("the CelebA website's Google Drive (Align&Cropped Images / img_align_celeba.zip, and the Anno and "
         "Eval folders)")


class _CelebANoMD5(CelebA):
    def _check_integrity(self) -> bool:
        base = os.path.join(self.root, self.base_folder)
        return all(os.path.isfile(os.path.join(base, f)) for f in FILES) and os.path.isdir(
            os.path.join(base, "img_align_celeba"))


class CelebADictDataset(Dataset):
    """torchvision's CelebA as dict items ``{"image": uint8 (3, S, S), "label", "index"}``."""

    def __init__(self, base: CelebA, attr_index: int) -> None:
        self.base, self.attr_index = base, attr_index

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        try:
            img, attr = self.base[i]
        except (OSError, SyntaxError, ValueError) as e:  # PIL: truncated or not an image
            path = os.path.join(self.base.root, self.base.base_folder, "img_align_celeba", self.base.filename[i])
            raise DataError(f"CelebA image {path} could not be read ({e}); it is corrupt or truncated. "
                            "Extract it again from img_align_celeba.zip.") from e
        return {"image": img, "label": attr[self.attr_index].long(), "index": torch.tensor(i)}


class CelebADataModule(ImageDataModule):
    """CelebA faces at ``image_size`` x ``image_size``; train / valid / test from list_eval_partition.txt.

    Args:
        root: folder that holds ``celeba/``.
        download: try torchvision's download (often fails on Google Drive quota).
        verify_md5: check the annotation files' md5 sums (off for your own copy).
        image_size: output side (paper: 64).
        crop: side of the centre crop before resizing.
        label_attr: the attribute used as ``label`` by the evaluation callbacks.
    """

    num_classes = 2

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        verify_md5: bool = True,
        image_size: int = 64,
        crop: int = 148,
        label_attr: str = "Male",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, on_device=False, seed=seed)
        self.download, self.verify_md5, self.label_attr = download, verify_md5, label_attr
        self.shape = (3, image_size, image_size)
        self.transform = transforms.Compose([
            transforms.CenterCrop(crop), transforms.Resize(image_size, antialias=True), transforms.PILToTensor(),
        ])

    def prepare_data(self) -> None:
        if self.download:
            try:
                CelebA(self.root, split="all", download=True)
            except Exception as e:
                raise DataError(
                    f"Downloading CelebA into {os.path.abspath(self.root)}/celeba failed ({e}). Download the files "
                    f"from {WHERE}, unzip the images to {os.path.abspath(self.root)}/celeba/img_align_celeba/, put "
                    f"{', '.join(FILES)} next to it, and set `data.init_args.download: false`."
                ) from e

    def _check_files(self) -> None:
        base = os.path.join(self.root, "celeba")
        missing = [f for f in FILES if not os.path.isfile(os.path.join(base, f))]
        if not os.path.isdir(os.path.join(base, "img_align_celeba")):
            missing.append("img_align_celeba/")
        if missing:
            raise DataError(
                f"CelebA is incomplete in {os.path.abspath(base)}: missing {', '.join(missing)}. Get them from {WHERE} "
                f"and put them in that folder (images unzipped into img_align_celeba/), or point "
                "`data.init_args.root` at the folder that holds celeba/."
            )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self._check_files()
        cls = CelebA
        if not self.verify_md5:
            warnings.warn("CelebA: md5 check of the annotation files skipped (verify_md5: false).", stacklevel=2)
            cls = _CelebANoMD5
        for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
            try:
                ds = cls(self.root, split=name, target_type="attr", transform=self.transform)
            except RuntimeError as e:
                raise DataError(
                    f"CelebA annotation files in {os.path.abspath(self.root)}/celeba failed torchvision's md5 check "
                    "(corrupted or a different version). Download them again, or set "
                    "`data.init_args.verify_md5: false` for your own copy."
                ) from e
            except (ValueError, IndexError) as e:
                raise DataError(f"CelebA annotation files in {os.path.abspath(self.root)}/celeba could not be parsed "
                                f"({e}); they are truncated. Download them again.") from e
            if self.label_attr not in ds.attr_names:
                raise ConfigError(f"label_attr={self.label_attr!r} is not a CelebA attribute; choose one of {ds.attr_names}.")
            self.splits[split] = CelebADictDataset(ds, ds.attr_names.index(self.label_attr))
        listed = sum(len(s) for s in self.splits.values())
        present = len(os.listdir(os.path.join(self.root, "celeba", "img_align_celeba")))
        if present < listed:
            raise DataError(f"CelebA: list_eval_partition.txt lists {listed} images but img_align_celeba/ holds "
                            f"{present}; the unzip is incomplete. Unzip img_align_celeba.zip again.")
