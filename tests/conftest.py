"""Shared fixtures: no network, W&B offline, small thread count, helpers to run the CLI."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
torch.set_num_threads(min(2, os.cpu_count() or 1))
# judges trained by the callbacks are shared within this pytest run (SPLIT and its baseline on the same data,
# as for a user), never with a developer's own ~/.cache/splitlab or with an earlier pytest run
_CACHE = tempfile.mkdtemp(prefix="splitlab-test-cache-")
os.environ["SPLITLAB_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


def has_cuda() -> bool:
    return torch.cuda.is_available()


def write_svhn_mat(folder: Path, split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write ``<split>_32x32.mat`` in SVHN's real layout: X (32, 32, 3, N) uint8, y (N, 1) with 10 for 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    digits = rng.integers(0, 10, size=n)
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    return x, digits


@pytest.fixture
def fake_svhn(tmp_path: Path) -> Path:
    root = tmp_path / "svhn"
    write_svhn_mat(root, "train", 96, seed=1)
    write_svhn_mat(root, "test", 48, seed=2)
    return root


def run_cli(args: list[str], cwd: Path = ROOT, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m splitlab ARGS`` in a fresh process (as a user would)."""
    e = dict(os.environ)
    e.update({"PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "2"})
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "splitlab", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout
    )


def run_of(root: Path) -> Path:
    """The run folder that ``lightning fit --trainer.default_root_dir=root`` wrote (the newest, if several)."""
    from splitlab.runs import resolve

    return Path(resolve(str(root))[-1])


def read_metrics(root: Path, name: str = "metrics.json") -> dict:
    """``metrics.json`` of the newest run under ``root`` (a config's folder) or of ``root`` itself (a run)."""
    with open(run_of(root) / name) as f:
        return json.load(f)
