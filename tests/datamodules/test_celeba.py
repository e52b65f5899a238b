"""The real CelebA loader over a tiny folder in CelebA's real layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.celeba import CelebADataModule
from splitlab.errors import ConfigError, DataError

ATTRS = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
         "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
         "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
         "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
         "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
         "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young"]


def write_celeba(root, n=12, seed=0):
    """img_align_celeba/*.jpg (178x218) and the five annotation files, as CelebA ships them."""
    rng = np.random.default_rng(seed)
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    partition = [0] * (n - 4) + [1, 1, 2, 2]
    male = rng.integers(0, 2, n)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(base / "img_align_celeba" / name)
    (base / "list_eval_partition.txt").write_text("".join(f"{a} {p}\n" for a, p in zip(names, partition)))
    (base / "identity_CelebA.txt").write_text("".join(f"{a} {i + 100}\n" for i, a in enumerate(names)))
    rows = []
    for i, a in enumerate(names):
        vals = [-1] * 40
        vals[ATTRS.index("Male")] = 1 if male[i] else -1
        rows.append(a + " " + " ".join(f"{v:2d}" for v in vals))
    (base / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(ATTRS) + " \n" + "\n".join(rows) + "\n")
    (base / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{a}    95  71 226 313\n" for a in names))
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
        + "".join(f"{a} 69 109 106 113 77 142 73 152 108 154\n" for a in names))
    return male, partition


def test_reads_real_layout_crops_to_64_and_labels_by_attribute(tmp_path):
    male, partition = write_celeba(tmp_path)
    dm = CelebADataModule(root=str(tmp_path), verify_md5=False, batch_size=4, num_workers=0)
    with pytest.warns(UserWarning, match="md5"):
        dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 2, 2)
    item = dm.train_set[3]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.uint8
    assert item["label"].item() == male[3]
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].max() <= 1
    assert dm.first_images("val", 8).shape == (2, 3, 64, 64)


def test_md5_on_by_default(tmp_path):
    write_celeba(tmp_path)
    with pytest.raises(DataError, match="md5 check.*verify_md5: false"):
        CelebADataModule(root=str(tmp_path)).setup("fit")


def test_missing_files_named(tmp_path):
    write_celeba(tmp_path)
    (tmp_path / "celeba" / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataError, match="missing list_attr_celeba.txt"):
        CelebADataModule(root=str(tmp_path), verify_md5=False).setup("fit")
    with pytest.raises(DataError, match="missing .*img_align_celeba/"):
        CelebADataModule(root=str(tmp_path / "elsewhere")).setup("fit")


def test_corrupt_image_is_named(tmp_path):
    write_celeba(tmp_path)
    img = tmp_path / "celeba" / "img_align_celeba" / "000002.jpg"
    img.write_bytes(img.read_bytes()[:200])
    dm = CelebADataModule(root=str(tmp_path), verify_md5=False, num_workers=0)
    with pytest.warns(UserWarning):
        dm.setup("fit")
    with pytest.raises(DataError, match="000002.jpg could not be read"):
        dm.train_set[1]


def test_unknown_label_attribute(tmp_path):
    write_celeba(tmp_path)
    with pytest.raises(ConfigError, match="not a CelebA attribute"):
        with pytest.warns(UserWarning):
            CelebADataModule(root=str(tmp_path), verify_md5=False, label_attr="Beard").setup("fit")
