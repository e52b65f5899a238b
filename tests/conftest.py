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


def cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``lightning ARGS`` through the console script's entry point in this process, with what a fresh
    process would print to stdout / stderr and its exit status in a ``CompletedProcess``.

    A fresh process costs ~5 s of imports on 2 cores; tests that need one (signals, kills, several processes,
    a config given through the environment of a new process) use :func:`run_cli`. What the CLI changes in
    the process (environment variables, signal handlers, torch's thread count) is put back afterwards."""
    import contextlib
    import io
    import logging
    import signal

    from splitlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, threads = dict(os.environ), torch.get_num_threads()
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    streams = [h for name in ("", "lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric")
               for h in logging.getLogger(name).handlers if type(h) is logging.StreamHandler]
    saved_streams = [h.stream for h in streams]
    os.environ.update({"WANDB_MODE": "offline", **(env or {})})
    code, cwd, argv = 0, os.getcwd(), sys.argv[:]
    try:
        sys.argv[:] = ["lightning"]  # not pytest's own arguments (LightningCLI warns when it sees both)
        os.chdir(ROOT)  # config paths are relative to the repository, as for run_cli
        for h in streams:
            h.setStream(err)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) or e.code is None else 1
                if code == 1 and not isinstance(e.code, int):  # sys.exit("message"): Python prints it
                    print(e.code, file=sys.stderr)
                code = code or 0
            except Exception:
                import traceback

                traceback.print_exc()
                code = 1
    finally:
        sys.argv[:] = argv
        os.chdir(cwd)
        for h, s in zip(streams, saved_streams):
            h.setStream(s)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
        for s, h in saved_signals.items():
            signal.signal(s, h)
    return subprocess.CompletedProcess(["lightning", *args], code, out.getvalue(), err.getvalue())


def run_cli(args: list[str], cwd: Path = ROOT, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m splitlab ARGS`` in a fresh process (as a user would; :func:`cli` runs it in this one)."""
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
