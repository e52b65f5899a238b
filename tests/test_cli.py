"""Every shipped config runs one step through the CLI; bad input stops with one clear message."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT, cli, run_cli, run_of, write_svhn_mat

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _data_overrides(cfg_path: Path, tmp_path: Path) -> list[str]:
    """Point real-dataset configs at small files written in the real on-disk format."""
    cfg = yaml.safe_load(cfg_path.read_text())
    cls = cfg["data"]["class_path"]
    if cls.endswith("SVHNDataModule"):
        root = tmp_path / "svhn"
        write_svhn_mat(root, "train", 96, seed=1)
        write_svhn_mat(root, "test", 48, seed=2)
        return [f"--data.init_args.root={root}", "--data.init_args.download=false",
                "--data.init_args.verify_md5=false", "--data.init_args.val_size=16"]
    if cls.endswith("CelebADataModule"):
        from tests.datamodules.test_celeba import write_celeba

        write_celeba(tmp_path, n=12)
        return [f"--data.init_args.root={tmp_path}", "--data.init_args.download=false",
                "--data.init_args.verify_md5=false", "--data.init_args.num_workers=0"]
    if cls.endswith("CIFAR10DataModule"):
        from tests.datamodules.test_cifar10 import write_cifar10

        write_cifar10(tmp_path, per_batch=8, n_test=8)
        # the shipped model, a small batch: one step of the paper-size flow stays cheap on a CPU
        return [f"--data.init_args.root={tmp_path}", "--data.init_args.download=false",
                "--data.init_args.verify_md5=false", "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=4"]
    if cls.endswith("MultiBirdDataModule"):
        out = [f"--data.init_args.root={tmp_path / 'multi_bird'}", "--data.init_args.num_train=64",
               "--data.init_args.num_val=16", "--data.init_args.num_test=16", "--data.init_args.batch_size=8"]
        if cfg["data"]["init_args"].get("sprites", "cub") == "cub":
            from tests.datamodules.test_multi_bird import write_cub

            write_cub(tmp_path / "cub", n=6)  # CUB-200-2011's real layout, tiny
            out.append(f"--data.init_args.cub_root={tmp_path / 'cub'}")
        return out
    return []


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_runs_one_step(cfg, tmp_path, monkeypatch, capsys):
    """`--trainer.logger false` (the README's way to turn logging off) with every shipped config.

    ``fast_dev_run`` swaps any configured logger for a no-op one, so this is also what a run
    with the config's own logger goes through; the learning rate still reaches metrics.json.
    Through the console script's own entry point, in this process (a fresh process per config
    cost CI ~4 s of imports each; other tests here run the CLI as a subprocess).
    """
    from splitlab.cli import main

    run_dir = tmp_path / "run"
    if "FIDCallback" in cfg.read_text():  # offline: a local Inception file (random weights) for FID
        from tests.callbacks.test_flow_callbacks import write_random_inception

        monkeypatch.setenv("SPLITLAB_FID_WEIGHTS", write_random_inception(tmp_path / "inception.pth"))
    main(["fit", "--config", str(cfg), "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={run_dir}",
          "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.logger=false", *_data_overrides(cfg, tmp_path)])
    metrics = json.loads((run_of(run_dir) / "metrics.json").read_text())
    assert metrics["config"] == cfg.stem and metrics["step"] == 1
    if "LearningRateMonitor" in cfg.read_text():
        assert any(k.startswith("lr-") for k in metrics["metrics"]), metrics["metrics"]
    assert "final metrics written to" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["quickstart_spair_easy.yaml", "quickstart_split_spair_easy.yaml"])
def test_easy_quickstarts_decay_the_lr_per_step_and_a_resume_continues_it(name, tmp_path, recwarn):
    """Both Easy quick-starts ship ``MultiStepLR`` (x0.3 at each milestone, README: Fig. 8 at 30 min).
    Its milestones count optimiser steps, not epochs (8 steps per epoch here), and a run resumed
    from a checkpoint carries on with the decayed lr. Milestones moved to steps 2 and 4. Built
    as the benchmarks build it (``build_cli``: pytest's own argv stays out of the CLI's way)."""
    from splitlab.cli import build_cli

    cfg = ROOT / "configs" / name
    assert yaml.safe_load(cfg.read_text())["model"]["init_args"]["lr_scheduler"]["init_args"] == {
        "milestones": [6000, 8000], "gamma": 0.3}
    common = ["--config", str(cfg), *_data_overrides(cfg, tmp_path), "--trainer.logger=false",
              "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
              "--trainer.max_epochs=-1", "--trainer.limit_val_batches=0", f"--trainer.default_root_dir={tmp_path}",
              "--model.init_args.lr_scheduler.init_args.milestones=[2,4]"]

    def lr(cli) -> float:
        return cli.trainer.optimizers[0].param_groups[0]["lr"]

    first = build_cli([*common, "--trainer.max_steps=3"])
    first.trainer.fit(first.model, datamodule=first.datamodule)
    assert lr(first) == pytest.approx(1e-3 * 0.3)  # past the first milestone, before the second
    first.trainer.save_checkpoint(tmp_path / "step3.ckpt")
    resumed = build_cli([*common, "--trainer.max_steps=5"])
    resumed.trainer.fit(resumed.model, datamodule=resumed.datamodule, ckpt_path=tmp_path / "step3.ckpt")
    assert resumed.trainer.global_step == 5
    assert lr(resumed) == pytest.approx(1e-3 * 0.3 * 0.3)
    assert not [w for w in recwarn if "args parameter" in str(w.message)]  # LightningCLI's "got both" warning


def test_lightnings_own_lr_monitor_works_without_a_logger(tmp_path):
    """A user's config naming Lightning's LearningRateMonitor is not stopped by `--trainer.logger false`."""
    run = tmp_path / "run"
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.fast_dev_run=1", "--trainer.logger=false",
             "--trainer.callbacks+=pytorch_lightning.callbacks.LearningRateMonitor",
             f"--trainer.default_root_dir={run}"])
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run_of(run) / "metrics.json").read_text())["metrics"]
    assert metrics["lr-Adam"] == pytest.approx(2e-3)


def test_print_config_and_module_entry():
    r = run_cli(["fit", "--config", "configs/quickstart.yaml", "--print_config"])
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["model"]["class_path"] == "lightning_modules.vae.VAE"
    assert cfg["model"]["init_args"]["local_branch"]["init_args"]["patch_size"] == 1


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("lightning")
    assert exe is not None, "pip install -e . should install the `lightning` console script"


def test_unknown_config_key_is_rejected(tmp_path):
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--model.init_args.betta=2",
             f"--trainer.default_root_dir={tmp_path}"])
    assert r.returncode != 0
    assert "betta" in r.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ("--model.init_args.local_branch.init_args.patch_size=5", "patch_size=5 does not divide the image size 32x32"),
        ("--model.init_args.beta=-1", "beta must be positive"),
        ("--model.init_args.z_g_dim=0", "z_g_dim must be a positive integer"),
        ("--model.init_args.local_branch.init_args.z_l_dim=0", "z_l_dim must be a positive integer"),
    ],
)
def test_bad_values_stop_before_training_with_one_message(override, message, tmp_path):
    r = cli(["fit", "--config", "configs/quickstart.yaml", override, f"--trainer.default_root_dir={tmp_path}",
             "--trainer.logger=false"])
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("**/checkpoints"))  # nothing trained, nothing saved


def test_missing_dataset_folder_says_where_to_put_what(tmp_path):
    r = cli(["fit", "--config", "configs/split_vae_svhn.yaml", f"--data.init_args.root={tmp_path}/none",
             "--data.init_args.download=false", f"--trainer.default_root_dir={tmp_path}/run",
             "--trainer.logger=false"])
    assert r.returncode == 2
    assert "train_32x32.mat is missing" in r.stderr and "Traceback" not in r.stderr


def test_truncated_dataset_file(tmp_path):
    root = tmp_path / "svhn"
    write_svhn_mat(root, "train", 64)
    write_svhn_mat(root, "test", 16)
    p = root / "train_32x32.mat"
    p.write_bytes(p.read_bytes()[:5000])
    r = cli(["fit", "--config", "configs/split_vae_svhn.yaml", f"--data.init_args.root={root}",
             "--data.init_args.download=false", "--data.init_args.verify_md5=false",
             f"--trainer.default_root_dir={tmp_path}/run", "--trainer.logger=false"])
    assert r.returncode == 2
    assert "truncated" in r.stderr and "Traceback" not in r.stderr


def test_fit_then_validate_test_predict_from_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    small = ["--config", "configs/quickstart.yaml", "--trainer.logger=false", f"--trainer.default_root_dir={run}",
             "--data.init_args.copies=1", "--data.init_args.eval_copies=1", "--trainer.accelerator=cpu",
             "--data.init_args.image_size=16", "--model.init_args.image_size=16"]  # 16x16: Table 1's judge trains in seconds
    r = cli(["fit", *small, "--trainer.max_steps=3", "--trainer.limit_val_batches=1"])
    assert r.returncode == 0, r.stderr[-3000:]
    run = run_of(run)  # the fit's own run folder inside the config's folder; later calls use it through `last`
    assert (run / "checkpoints" / "last.ckpt").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())  # the resolved config, in the run folder
    assert saved["trainer"]["max_steps"] == 3
    for sub in ("validate", "test"):
        r = cli([sub, *small, "--ckpt_path=last", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1"])
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((run / "metrics.json").read_text())
        stage = "val" if sub == "validate" else "test"
        assert m["stage"] == sub or m["stage"] == {"validate": "validate", "test": "test"}[sub]
        assert f"{stage}/table1_acc_recon" in m["metrics"] and f"{stage}/loss" in m["metrics"]
        assert "Table 1" in r.stdout
    assert (run / "metrics_fit.json").exists() and (run / "metrics_test.json").exists()
    r = cli(["predict", *small, "--ckpt_path=last", "--trainer.limit_predict_batches=1"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["stage"] == "test"  # predict writes latents, not metrics
    latents = torch.load(run / "latents_test.pt", weights_only=True)
    assert {"z_g", "z_l", "label", "index"} <= set(latents) and len(latents["z_g"]) == len(latents["label"]) > 0
    # a checkpoint file: Lightning builds the model from the checkpoint's values; a changed one is named, not lost silently
    r = cli(["validate", *small, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "--model.init_args.beta=2.0",
             "--trainer.limit_val_batches=1"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "not used" in r.stderr and "model.init_args.beta: 2.0 -> 1.0" in r.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["beta"] == 1.0
