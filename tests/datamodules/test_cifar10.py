"""CIFAR-10 on pickled batches written by the test in CIFAR-10's real layout."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.cifar10 import CIFAR10DataModule, flip_and_crop
from splitlab.errors import DataError


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """``cifar-10-batches-py/``: data_batch_1..5 and test_batch as pickled dicts (the real files are
    Python 2 pickles whose str keys load as ``str`` with latin1, as torchvision loads them),
    ``data`` (N, 3072) uint8 rows in CHW order, ``labels`` lists; ``batches.meta``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"{i}.png" for i in range(n)]}, f, protocol=2)
        out[name] = data
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per_batch}, f, protocol=2)
    return out


def test_reads_real_pickle_layout(tmp_path):
    data = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(root=str(tmp_path), verify_md5=False, val_size=5, batch_size=4)
    with pytest.warns(UserWarning, match="md5 check"):
        dm.setup("fit")
    assert dm.test_set.images.shape == (10, 3, 32, 32) and dm.test_set.images.dtype == torch.uint8
    # row i is CHW: channel c is data[i, c*1024:(c+1)*1024] as 32x32
    assert np.array_equal(dm.test_set.images[3, 1].numpy(), data["test_batch"][3, 1024:2048].reshape(32, 32))
    assert len(dm.train_set) == 35 and len(dm.val_set) == 5
    dm0 = CIFAR10DataModule(root=str(tmp_path), verify_md5=False, val_size=0)
    with pytest.warns(UserWarning):
        dm0.setup("fit")
    assert len(dm0.train_set) == 40 and dm0.val_set is dm0.test_set


def test_md5_check_is_on_by_default(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="md5 check.*verify_md5: false"):
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(DataError, match="data_batch_1.*download: true"):
        CIFAR10DataModule(root=str(tmp_path / "none")).setup("fit")
    write_cifar10(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(DataError, match="truncated"), pytest.warns(UserWarning):
        CIFAR10DataModule(root=str(tmp_path), verify_md5=False).setup("fit")
    assert p.exists()


def test_flip_and_crop_is_a_flip_and_a_shifted_window_of_the_reflect_padded_image():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    y = flip_and_crop(x, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(torch.cat([x, x.flip(-1)]), (4, 4, 4, 4), mode="reflect")
    for i in range(64):  # each output is some window of the padded image or of its flip
        found = any(torch.equal(y[i], padded[j][:, dy : dy + 32, dx : dx + 32])
                    for j in (i, 64 + i) for dy in range(9) for dx in range(9))
        assert found
    assert not torch.equal(y, x)
