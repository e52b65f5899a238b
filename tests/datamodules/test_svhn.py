import os

import numpy as np
import pytest
import torch

from datamodules.svhn import SVHNDataModule
from splitlab.errors import DataError
from tests.conftest import write_svhn_mat


def test_reads_real_mat_layout_and_maps_label_10_to_0(tmp_path):
    root = tmp_path / "svhn"
    x_train, d_train = write_svhn_mat(root, "train", 40, seed=1)
    x_test, d_test = write_svhn_mat(root, "test", 12, seed=2)
    dm = SVHNDataModule(root=str(root), verify_md5=False, val_size=10, batch_size=8)
    with pytest.warns(UserWarning, match="md5 check"):
        dm.setup("fit")
    assert dm.test_set.images.shape == (12, 3, 32, 32) and dm.test_set.images.dtype == torch.uint8
    # X is (H, W, C, N): image i channel c is X[:, :, c, i]
    assert np.array_equal(dm.test_set.images[5, 2].numpy(), x_test[:, :, 2, 5])
    assert np.array_equal(dm.test_set.labels.numpy(), d_test)  # 10 -> 0
    assert (dm.test_set.labels == 0).any()
    assert len(dm.train_set) == 30 and len(dm.val_set) == 10
    # the train/val split is a partition of SVHN train
    all_train = torch.cat([dm.train_set.labels, dm.val_set.labels]).sort().values
    assert torch.equal(all_train, torch.as_tensor(d_train).sort().values)
    batch = next(iter(dm.train_dataloader()))
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["image"].dtype == torch.float32 and batch["image"].max() <= 1.0
    assert set(batch) == {"image", "label", "index"}


def test_md5_check_is_on_by_default_and_its_error_says_what_to_do(fake_svhn):
    dm = SVHNDataModule(root=str(fake_svhn), val_size=10)
    with pytest.raises(DataError, match="md5 check.*verify_md5: false"):
        dm.setup("fit")


def test_missing_folder_names_the_files(tmp_path):
    dm = SVHNDataModule(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataError, match=r"train_32x32\.mat is missing.*download: true"):
        dm.setup("fit")


def test_truncated_file(fake_svhn):
    path = fake_svhn / "train_32x32.mat"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    dm = SVHNDataModule(root=str(fake_svhn), verify_md5=False, val_size=10)
    with pytest.raises(DataError, match="truncated"):
        with pytest.warns(UserWarning):
            dm.setup("fit")
    assert os.path.exists(path)  # nothing deleted
