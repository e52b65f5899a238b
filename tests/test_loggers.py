"""W&B logging runs offline without an account, never prompts, never touches the network in tests."""
from __future__ import annotations

import glob

from splitlab.loggers import WandbLogger


def _no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_offline_without_credentials_and_writes_a_syncable_run(monkeypatch, tmp_path):
    _no_credentials(monkeypatch, tmp_path)
    lg = WandbLogger(save_dir=str(tmp_path / "run"), project="splitlab-test", name="t")
    assert lg._offline is True
    lg.log_metrics({"train/loss": 1.5}, step=0)
    lg.experiment.finish()
    assert glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))


def test_online_when_credentials_exist_and_wandb_mode_wins(monkeypatch, tmp_path):
    _no_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert WandbLogger(save_dir=str(tmp_path))._offline is False  # decided only; no init here
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert WandbLogger(save_dir=str(tmp_path))._offline is True
