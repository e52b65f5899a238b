"""Kill a run after a checkpoint, resume with --ckpt_path last: the same run continues."""
from __future__ import annotations

import math

import pytest
import torch
import yaml

from tests.conftest import cli, read_metrics, run_cli, run_of

COMMON = [
    "fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs=3", "--trainer.limit_train_batches=8",
    "--data.init_args.image_size=16", "--model.init_args.image_size=16",  # 16x16: the same code paths, 4x less compute
    "--trainer.limit_val_batches=2", "--trainer.logger=false", "--trainer.log_every_n_steps=1",
    "--trainer.accelerator=cpu",
]


def _callbacks_file(tmp_path, extra: list[dict]) -> str:
    """A second --config that replaces trainer.callbacks (the quick-start's judge is not needed here)."""
    path = tmp_path / f"callbacks_{len(extra)}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": extra}}))
    return str(path)


@pytest.mark.slow
def test_resume_after_kill_continues_the_same_run(tmp_path):
    plain = _callbacks_file(tmp_path, [])
    # 1. uninterrupted: 3 epochs x 8 steps
    a = tmp_path / "a"
    r = run_cli([*COMMON, "--config", plain, f"--trainer.default_root_dir={a}"])
    assert r.returncode == 0, r.stderr[-3000:]
    full = read_metrics(a)
    assert full["step"] == 24

    # 2. same run, SIGKILLed at step 20 (after the end-of-epoch-2 checkpoint at step 16)
    b = tmp_path / "b"
    kill = _callbacks_file(tmp_path, [{"class_path": "tests.helpers.KillAtStep", "init_args": {"step": 20}}])
    r = run_cli([*COMMON, "--config", kill, f"--trainer.default_root_dir={b}"])
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    ckpt = torch.load(run_of(b) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 16

    # 3. resume from last.ckpt
    r = run_cli([*COMMON, "--config", plain, f"--trainer.default_root_dir={b}", "--ckpt_path=last"])
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = read_metrics(b)
    assert resumed["step"] == 24
    final = torch.load(run_of(b) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # the optimiser state continued: Adam's step count is the global step, not 24 - 16
    assert int(final["optimizer_states"][0]["state"][0]["step"]) == 24
    for key in ("train/loss", "train/recon", "val/loss"):
        assert math.isclose(resumed["metrics"][key], full["metrics"][key], rel_tol=1e-5), key


@pytest.mark.slow
def test_nan_loss_stops_naming_step_and_term_and_keeps_last_ckpt(tmp_path):
    cb = _callbacks_file(tmp_path, [
        {"class_path": "tests.helpers.PoisonAtStep", "init_args": {"step": 11}},
        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"every_n_train_steps": 4, "every_n_epochs": None, "save_last": True}},
    ])
    run = tmp_path / "nan"
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--config", cb, f"--trainer.default_root_dir={run}",
             "--trainer.max_steps=30", "--trainer.logger=false", "--trainer.log_every_n_steps=50",
             "--trainer.limit_val_batches=0", "--trainer.accelerator=cpu"])
    assert r.returncode == 2, r.stderr[-3000:]
    assert "['recon']" in r.stderr and "at step 11" in r.stderr and "Traceback" not in r.stderr
    last = torch.load(run_of(run) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 8  # the save at step 12 was refused; step 8's survives
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_nan_guard_takes_a_loss_term_that_starts_mid_run():
    """A term that joins at some step (e.g. SPAIR's ``pres_credit_start``) neither crashes the guard nor hides a NaN."""
    from lightning_modules.base import NonFiniteLossError
    from lightning_modules.vae import VAE

    m = VAE(image_size=16, channels=1)
    one = torch.tensor(1.0)
    m._track_nonfinite({"recon": one, "loss": one})
    m._track_nonfinite({"recon": one, "late": one, "loss": one})  # a ninth term at step 2000 crashed here before
    m.check_finite()
    m._track_nonfinite({"recon": one, "late": torch.tensor(float("nan")), "loss": torch.tensor(float("nan"))})
    with pytest.raises(NonFiniteLossError, match=r"\['late'\]"):
        m.check_finite()
